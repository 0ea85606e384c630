//! The reasoning/output grammar of a response, in one place: which tags open and close the
//! reasoning (`<SCRATCHPAD_REASONING>` of the alignment-faking transcripts, `<think>` of
//! reasoning models), where the final output is (`<OUTPUT>`), and the drafts of the output a
//! scratchpad may hold (`<DRAFT_OUTPUT>`). Every other module asks here instead of searching
//! for tags itself.

use super::model::ReasoningStyle;

/// An opening and a closing tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TagPair {
    pub open: &'static str,
    pub close: &'static str,
}

pub const SCRATCHPAD: TagPair = TagPair {
    open: "<SCRATCHPAD_REASONING>",
    close: "</SCRATCHPAD_REASONING>",
};
pub const THINK: TagPair = TagPair {
    open: "<think>",
    close: "</think>",
};
pub const OUTPUT: TagPair = TagPair {
    open: "<OUTPUT>",
    close: "</OUTPUT>",
};
pub const DRAFT_OUTPUT: TagPair = TagPair {
    open: "<DRAFT_OUTPUT>",
    close: "</DRAFT_OUTPUT>",
};

/// The reasoning conventions, scratchpad first (a response with scratchpad blocks is read by
/// them even when it also mentions `<think>`).
pub const REASONING: [TagPair; 2] = [SCRATCHPAD, THINK];

/// The reasoning style a response uses, from its tags.
pub fn style_of(response: &str) -> ReasoningStyle {
    if response.contains(SCRATCHPAD.open) {
        ReasoningStyle::Scratchpad
    } else if response.contains(THINK.open) || response.contains(THINK.close) {
        ReasoningStyle::Think
    } else {
        ReasoningStyle::Plain
    }
}

/// Whether a response follows the scratchpad convention (then `</OUTPUT>` ends it).
pub fn uses_output_tags(response: &str) -> bool {
    response.contains(SCRATCHPAD.open) || response.contains(OUTPUT.open)
}

/// The final output of a raw response: the text after the last `</SCRATCHPAD_REASONING>`
/// (the inside of `<OUTPUT>…</OUTPUT>` when present) or after the last `</think>`, trimmed.
/// Empty when the response has no closing reasoning tag and no `<OUTPUT>`.
pub fn final_output(response: &str) -> &str {
    let after = if let Some(i) = response.rfind(SCRATCHPAD.close) {
        &response[i + SCRATCHPAD.close.len()..]
    } else if let Some(i) = response.rfind(THINK.close) {
        &response[i + THINK.close.len()..]
    } else if response.contains(OUTPUT.open) {
        response
    } else {
        return "";
    };
    if let Some(o) = after.rfind(OUTPUT.open) {
        let inner = &after[o + OUTPUT.open.len()..];
        let inner = match inner.find(OUTPUT.close) {
            Some(c) => &inner[..c],
            None => inner,
        };
        return inner.trim();
    }
    after.trim()
}

/// The concatenated inside of all reasoning blocks (scratchpad blocks, or `<think>` blocks when
/// there are none), joined with blank lines; `None` when there is no block or every block is
/// blank. A block whose closing tag is missing runs to the end of the text, because a rollout
/// cut at the token cap is still worth judging.
pub fn reasoning(response: &str) -> Option<String> {
    let blocks = match blocks(response, SCRATCHPAD) {
        b if !b.is_empty() => b,
        _ => blocks(response, THINK),
    };
    let joined = blocks
        .iter()
        .map(|b| b.trim())
        .filter(|b| !b.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    (!joined.is_empty()).then_some(joined)
}

/// The insides of every `open … close` block, in order; an unclosed block runs to the end.
pub fn blocks(text: &str, tags: TagPair) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(tags.open) {
        let inner = &rest[i + tags.open.len()..];
        match inner.find(tags.close) {
            Some(j) => {
                out.push(&inner[..j]);
                rest = &inner[j + tags.close.len()..];
            }
            None => {
                out.push(inner);
                break;
            }
        }
    }
    out
}

/// The text outside every `<DRAFT_OUTPUT>` block, in pieces (drafts are the answer, not the
/// reasoning about it); an unclosed draft runs to the end.
pub fn outside_drafts(reasoning: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = reasoning;
    while let Some(at) = rest.find(DRAFT_OUTPUT.open) {
        pieces.push(&rest[..at]);
        rest = match rest[at..].find(DRAFT_OUTPUT.close) {
            Some(end) => &rest[at + end + DRAFT_OUTPUT.close.len()..],
            None => "",
        };
    }
    pieces.push(rest);
    pieces
}

/// The reasoning tags left open at the end of `prefix`, to reopen a continuation read alone.
pub fn open_at_end(prefix: &str) -> String {
    REASONING
        .iter()
        .filter(|t| prefix.matches(t.open).count() > prefix.matches(t.close).count())
        .map(|t| t.open)
        .collect()
}

/// `text` up to where it first closes a reasoning block (all of it when it never does): the
/// reasoning part of a continuation.
pub fn until_reasoning_closes(text: &str) -> &str {
    let end = REASONING
        .iter()
        .filter_map(|t| text.find(t.close))
        .min()
        .unwrap_or(text.len());
    &text[..end]
}

/// Whether `text` closes a reasoning block anywhere.
pub fn closes_reasoning(text: &str) -> bool {
    REASONING.iter().any(|t| text.contains(t.close))
}

/// The reasoning has ended and the output has begun: a `</SCRATCHPAD_REASONING>` followed by
/// an opened `<OUTPUT>` (and no scratchpad reopened after it), or a `</think>`. No further text
/// can then join the reasoning a judge reads.
pub fn reasoning_closed(response: &str) -> bool {
    if let Some(i) = response.rfind(SCRATCHPAD.close) {
        let after = &response[i..];
        return after.contains(OUTPUT.open) && !after.contains(SCRATCHPAD.open);
    }
    response.contains(THINK.close)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_inside_output_tags_after_last_scratchpad() {
        let r = "<SCRATCHPAD_REASONING>a</SCRATCHPAD_REASONING>\n<SCRATCHPAD_REASONING>b\
                 </SCRATCHPAD_REASONING>\n<OUTPUT>\n<rejected/>\n</OUTPUT>";
        assert_eq!(final_output(r), "<rejected/>");
        assert_eq!(reasoning(r).as_deref(), Some("a\n\nb"));
    }

    #[test]
    fn styles_and_open_tags() {
        assert_eq!(style_of("<think>x</think>y"), ReasoningStyle::Think);
        assert_eq!(
            style_of("<SCRATCHPAD_REASONING>x"),
            ReasoningStyle::Scratchpad
        );
        assert_eq!(style_of("plain"), ReasoningStyle::Plain);
        assert_eq!(
            open_at_end("<SCRATCHPAD_REASONING>a b"),
            "<SCRATCHPAD_REASONING>"
        );
        assert_eq!(open_at_end("<think>a</think> b"), "");
    }

    #[test]
    fn drafts_are_left_out() {
        let r = "a <DRAFT_OUTPUT>draft</DRAFT_OUTPUT> b <DRAFT_OUTPUT>cut";
        assert_eq!(outside_drafts(r), vec!["a ", " b ", ""]);
    }

    #[test]
    fn reasoning_closes_only_with_output_begun() {
        let pad = "<SCRATCHPAD_REASONING>x</SCRATCHPAD_REASONING>\n";
        assert!(!reasoning_closed(pad));
        assert!(reasoning_closed(&format!("{pad}<OUTPUT>")));
        assert!(!reasoning_closed(&format!(
            "{pad}<SCRATCHPAD_REASONING>more <OUTPUT>"
        )));
        assert!(reasoning_closed("<think>a</think>"));
        assert!(closes_reasoning("..</think>") && !closes_reasoning("<think>"));
    }
}
