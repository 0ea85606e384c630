//! Compute the similarities that stored rollouts lack (imported Thought Anchors replacements,
//! or rollouts sampled while no embedder was installed), with the same embedder and rule as the
//! worker (cosine of T_i and S_i), and keep them in the similarity cache so each is computed
//! once. Without them counterfactual importance cannot be computed from those rollouts.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::embed::cosine;
use crate::worker::job::Embedder;
use anchorscope_core::store::similarities::{
    append_cache, needs_similarity, original_of, text_hash, CachedSimilarity, EMBEDDER,
};
use anchorscope_core::trace::{Rollout, Trace};

/// Texts embedded per call: large enough to amortise a call, small enough that progress moves
/// and an interrupted run keeps most of its work (each batch is appended to the cache).
const BATCH: usize = 64;

/// How many distinct (original, replacement) pairs still need a similarity.
pub fn missing_pairs(trace: &Trace, rollouts: &[Rollout]) -> usize {
    pairs(trace, rollouts).len()
}

fn pairs(trace: &Trace, rollouts: &[Rollout]) -> Vec<(String, String)> {
    let mut seen = BTreeMap::new();
    for r in rollouts.iter().filter(|r| needs_similarity(trace, r)) {
        if let Some(original) = original_of(trace, r.position) {
            seen.insert((original.to_string(), r.replacement.clone()), ());
        }
    }
    let mut pairs: Vec<(String, String)> = seen.into_keys().collect();
    // Batches are padded to their longest text: texts of like length together waste less.
    pairs.sort_by_key(|(_, replacement)| replacement.len());
    pairs
}

/// Compute every missing similarity, append each batch to the cache at `cache_path`, and set
/// them on the rollouts. `progress(done, total)` is called after each batch. Returns how many
/// rollouts got a similarity, and a warning when the cache could not be written.
pub fn fill_missing(
    trace: &Trace,
    rollouts: &mut [Rollout],
    cache_path: &Path,
    embedder: &mut dyn Embedder,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(usize, Option<String>), String> {
    let todo = pairs(trace, rollouts);
    let total = todo.len();
    let mut computed: HashMap<(String, String), f32> = HashMap::new();
    let mut originals: HashMap<String, Vec<f32>> = HashMap::new();
    let mut unsaved = None;
    for chunk in todo.chunks(BATCH) {
        // Originals are few and shared by many replacements: embed each once.
        let new_originals: Vec<&str> = chunk
            .iter()
            .map(|(o, _)| o.as_str())
            .filter(|o| !originals.contains_key(*o))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !new_originals.is_empty() {
            let vectors = embedder.embed(&new_originals).map_err(|e| e.to_string())?;
            for (o, v) in new_originals.iter().zip(vectors) {
                originals.insert(o.to_string(), v);
            }
        }
        let replacements: Vec<&str> = chunk.iter().map(|(_, r)| r.as_str()).collect();
        let vectors = embedder.embed(&replacements).map_err(|e| e.to_string())?;
        let mut entries = Vec::with_capacity(chunk.len());
        for ((original, replacement), v) in chunk.iter().zip(vectors) {
            let similarity = cosine(&originals[original], &v);
            entries.push(CachedSimilarity {
                embedder: EMBEDDER.into(),
                original: text_hash(original),
                replacement: text_hash(replacement),
                similarity,
            });
            computed.insert((original.clone(), replacement.clone()), similarity);
        }
        // A cache that cannot be written (a read-only dataset folder) costs only the reuse:
        // the values still count for this run.
        if unsaved.is_none() {
            if let Err(e) = append_cache(cache_path, &entries) {
                unsaved = Some(format!(
                    "{}: similarities not cached, so they will be computed again next time: {e}",
                    cache_path.display()
                ));
            }
        }
        progress(computed.len(), total);
    }
    let mut filled = 0;
    for r in rollouts.iter_mut() {
        if !needs_similarity(trace, r) {
            continue;
        }
        let Some(original) = original_of(trace, r.position) else {
            continue;
        };
        if let Some(&s) = computed.get(&(original.to_string(), r.replacement.clone())) {
            r.similarity = Some(s);
            filled += 1;
        }
    }
    Ok((filled, unsaved))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::test_double::LetterEmbedder;
    use anchorscope_core::store::similarities::{apply_cache, read_cache};
    use anchorscope_core::trace::{Message, Sentence};

    fn trace() -> Trace {
        let mut t = Trace::new(
            "t",
            vec![Message::new("user", "q")],
            "<think>abc. xyz.</think>".to_string(),
        );
        t.sentences = vec![
            Sentence {
                text: "abc.".into(),
                start: 7,
                end: 11,
            },
            Sentence {
                text: "xyz.".into(),
                start: 12,
                end: 16,
            },
        ];
        t
    }

    fn rollout(position: usize, replacement: &str) -> Rollout {
        Rollout::bare(position, 0, replacement)
    }

    #[test]
    fn computes_once_caches_and_a_reload_fills_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("t.similarities.jsonl");
        let t = trace();
        let mut rollouts = vec![
            rollout(0, "abc!"),
            rollout(0, "abc!"),
            rollout(0, "qqq."),
            rollout(1, "xyz"),
            rollout(2, "final output"),
        ];
        assert_eq!(missing_pairs(&t, &rollouts), 3, "duplicates count once");
        let mut calls = Vec::new();
        let (filled, unsaved) = fill_missing(
            &t,
            &mut rollouts,
            &cache,
            &mut LetterEmbedder,
            &mut |d, n| calls.push((d, n)),
        )
        .unwrap();
        assert_eq!(filled, 4);
        assert_eq!(unsaved, None);
        assert_eq!(calls.last(), Some(&(3, 3)));
        // Same letters: similarity 1; no shared letter: 0.
        assert!((rollouts[0].similarity.unwrap() - 1.0).abs() < 1e-6);
        assert!(rollouts[2].similarity.unwrap().abs() < 1e-6);
        assert!(rollouts[4].similarity.is_none());
        assert_eq!(missing_pairs(&t, &rollouts), 0);

        let mut fresh = vec![rollout(0, "qqq."), rollout(1, "xyz")];
        let (map, warnings) = read_cache(&cache).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(apply_cache(&t, &mut fresh, &map), 2);
        assert_eq!(fresh[1].similarity, rollouts[3].similarity);
    }
}
