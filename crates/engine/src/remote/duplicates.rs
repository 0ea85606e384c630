//! Identical choices within one reply: the mark of a server that seeds every choice of a
//! request with the request's `seed` (vLLM before its PR 11898; SGLang changed the shape of
//! n > 1 replies between releases). Such choices are one sample stored n times: they would
//! count n times in every rate, so the client must notice and stop asking for n > 1.

/// What is wrong with a reply's choices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Duplicates {
    /// Every choice has the same text.
    pub all_identical: bool,
    /// The choices (by position) whose text repeats an earlier choice's.
    pub repeats: Vec<usize>,
}

/// The duplicated choices of one reply, or `None` when it has none to worry about.
///
/// With n > 1, all choices identical is suspect whatever was sent. Any exact repeat counts
/// only when the request carried a `seed`: unseeded, two short continuations may coincide by
/// chance, but seeded, a repeat is far likelier to be the server reusing the seed, and a wrong
/// guess only costs requests (the fallback samples each seed on its own), never data.
pub fn duplicate_choices(texts: &[&str], seed_sent: bool) -> Option<Duplicates> {
    if texts.len() < 2 {
        return None;
    }
    let all_identical = texts.iter().all(|t| *t == texts[0]);
    let mut seen = std::collections::HashSet::with_capacity(texts.len());
    let repeats: Vec<usize> = texts
        .iter()
        .enumerate()
        .filter(|(_, t)| !seen.insert(**t))
        .map(|(i, _)| i)
        .collect();
    if all_identical || (seed_sent && !repeats.is_empty()) {
        Some(Duplicates {
            all_identical,
            repeats,
        })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_identical_choices_are_duplicates_seeded_or_not() {
        let texts = [" same text", " same text", " same text"];
        for seed_sent in [true, false] {
            let d = duplicate_choices(&texts, seed_sent).expect("duplicates");
            assert!(d.all_identical);
            assert_eq!(d.repeats, [1, 2]);
        }
    }

    #[test]
    fn one_repeat_counts_only_when_a_seed_was_sent() {
        let texts = [" a", " b", " a", " c"];
        let d = duplicate_choices(&texts, true).expect("duplicates");
        assert!(!d.all_identical);
        assert_eq!(d.repeats, [2]);
        assert_eq!(duplicate_choices(&texts, false), None);
    }

    #[test]
    fn distinct_choices_and_single_choices_are_fine() {
        assert_eq!(duplicate_choices(&[" a", " b", " a "], true), None);
        assert_eq!(duplicate_choices(&[" a"], true), None);
        assert_eq!(duplicate_choices(&[], true), None);
    }
}
