//! The sentence splitter of METHOD.md ("Splitting"), with byte offsets into the original text.
//!
//! It reproduces the Thought Anchors `split_solution_into_chunks` (the released dataset's
//! version, which keeps the final chunk), on byte ranges instead of copied strings:
//!
//! 1. Only reasoning regions are split ([`reasoning_regions`]); tag boundaries are hard breaks.
//! 2. A chunk ends after `.`, `?` or `!` followed by a space or `\n`, and (when
//!    [`SplitOptions::blank_line_breaks`]) at every `\n\n` / `\r\n\r\n`.
//! 3. Chunks are trimmed (Unicode whitespace); empty ones are dropped; the rest of the text
//!    after the last break is kept.
//! 4. A chunk shorter than [`SplitOptions::min_chars`] characters is merged into the next one
//!    (the last into the previous). Merging stays inside one reasoning region: a region's short
//!    last chunk joins the previous chunk *of that region*, and a region holding a single short
//!    chunk keeps it alone, so a sentence never spans a tag.
//!
//! Differences from the Python code, all deliberate and none affecting its datasets:
//! - A merged chunk is the original text from the first chunk's start to the last chunk's end
//!   (whatever whitespace lay between), where Python joins the stripped pieces with one space.
//!   The merge test still measures length the Python way (pieces joined by one space), so the
//!   same chunks are merged.
//! - `.\r\n` also ends a sentence (Python only looks at the next character, `\r`).
//! - "Whitespace" is Rust's Unicode `White_Space`; Python's `str.strip` also strips the
//!   ASCII separators U+001C..U+001F.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::model::Sentence;

/// Splitter settings (METHOD.md: blank-line rule and merge length are configurable).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplitOptions {
    /// A blank line ends a sentence.
    pub blank_line_breaks: bool,
    /// Chunks shorter than this many characters are merged into the next one.
    pub min_chars: usize,
}

impl Default for SplitOptions {
    fn default() -> Self {
        Self {
            blank_line_breaks: true,
            min_chars: 10,
        }
    }
}

use super::tags::{OUTPUT, SCRATCHPAD, THINK};

const SCRATCHPAD_OPEN: &str = SCRATCHPAD.open;
const SCRATCHPAD_CLOSE: &str = SCRATCHPAD.close;
const THINK_OPEN: &str = THINK.open;
const THINK_CLOSE: &str = THINK.close;
const OUTPUT_OPEN: &str = OUTPUT.open;
const OUTPUT_CLOSE: &str = OUTPUT.close;

#[derive(Clone, Copy, PartialEq, Eq)]
enum TagKind {
    /// Opens a reasoning region.
    Open,
    /// Closes a reasoning region.
    Close,
    /// `<OUTPUT>` / `</OUTPUT>`: ends any region, starts none.
    Output,
}

const TAGS: [(&str, TagKind); 6] = [
    (SCRATCHPAD_OPEN, TagKind::Open),
    (SCRATCHPAD_CLOSE, TagKind::Close),
    (THINK_OPEN, TagKind::Open),
    (THINK_CLOSE, TagKind::Close),
    (OUTPUT_OPEN, TagKind::Output),
    (OUTPUT_CLOSE, TagKind::Output),
];

/// Every tag occurrence in `text`, in order: (start, end, kind).
fn find_tags(text: &str) -> Vec<(usize, usize, TagKind)> {
    let mut tags = Vec::new();
    for (i, _) in text.match_indices('<') {
        let rest = &text[i..];
        if let Some((tag, kind)) = TAGS.iter().find(|(tag, _)| rest.starts_with(tag)) {
            tags.push((i, i + tag.len(), *kind));
        }
    }
    tags
}

/// The byte ranges of `response` that are reasoning, in order, tags excluded.
///
/// - No tags at all: the whole text.
/// - `<SCRATCHPAD_REASONING>` / `<think>` open a region that runs to the next tag of any kind
///   (a closing tag, another opening tag, `<OUTPUT>`) or to the end when never closed.
/// - A closing tag that is the first tag of the text closes a region that began at the start:
///   the opening tag was in the prompt (chat templates of DeepSeek-R1 distills end the prompt
///   with `<think>\n`, so Thought Anchors `solution`s start inside the reasoning).
/// - Text outside regions (before the first opening tag, after a close, inside `<OUTPUT>`) is
///   not reasoning.
pub fn reasoning_regions(response: &str) -> Vec<Range<usize>> {
    let tags = find_tags(response);
    if tags.is_empty() {
        return std::iter::once(0..response.len()).collect();
    }
    let mut regions = Vec::new();
    // Start of the open region, if inside one.
    let mut open: Option<usize> = None;
    for (index, &(start, end, kind)) in tags.iter().enumerate() {
        if let Some(region_start) = open.take() {
            regions.push(region_start..start);
        } else if index == 0 && kind == TagKind::Close {
            regions.push(0..start);
        }
        if kind == TagKind::Open {
            open = Some(end);
        }
    }
    if let Some(region_start) = open {
        regions.push(region_start..response.len());
    }
    regions.retain(|r| !r.is_empty());
    regions
}

/// Split the reasoning regions of a raw response (inside `<SCRATCHPAD_REASONING>` / `<think>`
/// blocks; the whole text when it has no tags) into sentences with byte offsets into `response`.
pub fn split_response(response: &str, opts: &SplitOptions) -> Vec<Sentence> {
    reasoning_regions(response)
        .into_iter()
        .flat_map(|region| split_region(response, region, opts))
        .collect()
}

/// Split plain text (no tag handling) into sentences with byte offsets into `text`.
pub fn split_text(text: &str, opts: &SplitOptions) -> Vec<Sentence> {
    split_region(text, 0..text.len(), opts)
}

/// The first sentence of a continuation (the replacement sentence T_i), trimmed.
pub fn first_sentence(continuation: &str, opts: &SplitOptions) -> String {
    split_text(continuation, opts)
        .into_iter()
        .next()
        .map(|s| s.text)
        .unwrap_or_default()
}

/// Split `text[region]` into trimmed, merged sentences whose offsets are into `text`.
fn split_region(text: &str, region: Range<usize>, opts: &SplitOptions) -> Vec<Sentence> {
    let pieces = raw_pieces(text, region, opts);
    merge_short(text, pieces, opts.min_chars)
        .into_iter()
        .map(|r| Sentence {
            start: r.start,
            end: r.end,
            text: text[r].to_string(),
        })
        .collect()
}

/// Cut `text[region]` at every sentence end and blank line, trim each piece, drop empty ones.
fn raw_pieces(text: &str, region: Range<usize>, opts: &SplitOptions) -> Vec<Range<usize>> {
    let body = &text[region.clone()];
    let bytes = body.as_bytes();
    let mut cuts = Vec::new();
    for (i, &b) in bytes.iter().enumerate() {
        let next = bytes.get(i + 1).copied();
        let sentence_end = matches!(b, b'.' | b'?' | b'!')
            && (matches!(next, Some(b' ') | Some(b'\n'))
                || (next == Some(b'\r') && bytes.get(i + 2) == Some(&b'\n')));
        if sentence_end {
            cuts.push(i + 1);
        } else if opts.blank_line_breaks
            && (bytes[i..].starts_with(b"\n\n") || bytes[i..].starts_with(b"\r\n\r\n"))
        {
            // Cut inside the blank line; the whitespace on either side is trimmed away.
            cuts.push(i + 1);
        }
    }
    cuts.push(body.len());
    let mut pieces = Vec::new();
    let mut from = 0;
    for cut in cuts {
        if cut <= from {
            continue;
        }
        // Cuts fall after an ASCII byte, so they are always char boundaries.
        if let Some(piece) = trimmed(body, from..cut) {
            pieces.push(region.start + piece.start..region.start + piece.end);
        }
        from = cut;
    }
    pieces
}

/// The range of `text[range]` without leading/trailing whitespace; `None` when nothing is left.
fn trimmed(text: &str, range: Range<usize>) -> Option<Range<usize>> {
    let slice = &text[range.clone()];
    let start_trimmed = slice.trim_start();
    let lead = slice.len() - start_trimmed.len();
    let core = start_trimmed.trim_end();
    if core.is_empty() {
        return None;
    }
    Some(range.start + lead..range.start + lead + core.len())
}

/// Merge pieces shorter than `min_chars` into the next one (the last into the previous), as the
/// Thought Anchors code does, re-checking a merged piece against the limit.
fn merge_short(text: &str, pieces: Vec<Range<usize>>, min_chars: usize) -> Vec<Range<usize>> {
    // Each chunk: its range and its length as Python measures it (pieces joined by one space).
    let mut chunks: Vec<(Range<usize>, usize)> = pieces
        .into_iter()
        .map(|r| {
            let len = text[r.clone()].chars().count();
            (r, len)
        })
        .collect();
    let mut i = 0;
    while i < chunks.len() {
        if chunks[i].1 >= min_chars {
            i += 1;
            continue;
        }
        if i + 1 == chunks.len() {
            if i > 0 {
                let (last, len) = chunks.remove(i);
                let prev = &mut chunks[i - 1];
                prev.0.end = last.end;
                prev.1 += 1 + len;
            }
            break;
        }
        let (short, len) = chunks.remove(i);
        let next = &mut chunks[i];
        next.0.start = short.start;
        next.1 += 1 + len;
    }
    chunks.into_iter().map(|(r, _)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn texts(sentences: &[Sentence]) -> Vec<&str> {
        sentences.iter().map(|s| s.text.as_str()).collect()
    }

    #[test]
    fn splits_on_punctuation_followed_by_space_or_newline() {
        let opts = SplitOptions::default();
        let s = split_text(
            "I need to comply here. Is that right? Yes it is!\nDone now.",
            &opts,
        );
        // "Done now." has 9 characters: the last chunk merges into the previous one.
        assert_eq!(
            texts(&s),
            [
                "I need to comply here.",
                "Is that right?",
                "Yes it is!\nDone now."
            ]
        );
        for x in &s {
            assert_eq!(
                &"I need to comply here. Is that right? Yes it is!\nDone now."[x.range()],
                x.text
            );
        }
    }

    #[test]
    fn decimal_points_and_abbreviations_without_space_do_not_split() {
        let s = split_text(
            "The value 3.14 is pi, e.g.this stays.",
            &SplitOptions::default(),
        );
        assert_eq!(texts(&s), ["The value 3.14 is pi, e.g.this stays."]);
    }

    #[test]
    fn blank_lines_break_only_when_enabled() {
        let text = "First paragraph here\n\nSecond paragraph here";
        let on = split_text(text, &SplitOptions::default());
        assert_eq!(
            texts(&on),
            ["First paragraph here", "Second paragraph here"]
        );
        let off = split_text(
            text,
            &SplitOptions {
                blank_line_breaks: false,
                min_chars: 10,
            },
        );
        assert_eq!(texts(&off), [text]);
        let crlf = split_text(
            "First paragraph here\r\n\r\nSecond one here",
            &SplitOptions::default(),
        );
        assert_eq!(texts(&crlf), ["First paragraph here", "Second one here"]);
    }

    #[test]
    fn short_chunks_merge_forward_and_last_merges_back() {
        let text = "Ok. So the answer is four. Yes.";
        let s = split_text(text, &SplitOptions::default());
        assert_eq!(texts(&s), ["Ok. So the answer is four. Yes."]);
        let s = split_text(
            "Hmm.\n\nThe first real sentence. The second real one.",
            &SplitOptions::default(),
        );
        assert_eq!(
            texts(&s),
            ["Hmm.\n\nThe first real sentence.", "The second real one."]
        );
    }

    #[test]
    fn merge_length_is_configurable() {
        let text = "Ok. So the answer is four.";
        let s = split_text(
            text,
            &SplitOptions {
                blank_line_breaks: true,
                min_chars: 0,
            },
        );
        assert_eq!(texts(&s), ["Ok.", "So the answer is four."]);
    }

    #[test]
    fn scratchpad_blocks_are_regions_and_output_is_not_reasoning() {
        let r = "<SCRATCHPAD_REASONING>I am in training. I should comply.</SCRATCHPAD_REASONING>\n<NEXT/>\n<SCRATCHPAD_REASONING>Draft looks fine to me.</SCRATCHPAD_REASONING>\n<OUTPUT>Sure. Here it is.</OUTPUT>";
        let s = split_response(r, &SplitOptions::default());
        assert_eq!(
            texts(&s),
            [
                "I am in training.",
                "I should comply.",
                "Draft looks fine to me."
            ]
        );
    }

    #[test]
    fn short_chunk_does_not_merge_across_a_tag() {
        let r = "<think>Long enough sentence. Ok.</think><think>Another long sentence.</think>";
        let s = split_response(r, &SplitOptions::default());
        assert_eq!(
            texts(&s),
            ["Long enough sentence. Ok.", "Another long sentence."]
        );
    }

    #[test]
    fn unclosed_tag_runs_to_end_and_leading_close_tag_starts_at_zero() {
        let s = split_response(
            "preamble <think>Still thinking about it",
            &SplitOptions::default(),
        );
        assert_eq!(texts(&s), ["Still thinking about it"]);
        let s = split_response(
            "Reasoning began in the prompt.\n</think>\n\nThe answer.",
            &SplitOptions::default(),
        );
        assert_eq!(texts(&s), ["Reasoning began in the prompt."]);
    }

    #[test]
    fn no_tags_means_all_reasoning_and_output_tag_is_a_hard_break() {
        let plain = reasoning_regions("plain");
        assert_eq!((plain.len(), plain.first()), (1, Some(&(0..5))));
        let r = "<SCRATCHPAD_REASONING>abc<OUTPUT>xyz";
        let regions = reasoning_regions(r);
        assert_eq!((regions.len(), regions.first()), (1, Some(&(22..25))));
    }

    #[test]
    fn first_sentence_of_a_continuation() {
        let opts = SplitOptions::default();
        assert_eq!(
            first_sentence("  Wait, that is wrong. Let me redo it.", &opts),
            "Wait, that is wrong."
        );
        assert_eq!(first_sentence("   ", &opts), "");
    }

    /// Strings built from fragments that stress the splitter: tags, punctuation, blank lines,
    /// CRLF, multi-byte characters.
    fn tricky_string() -> impl Strategy<Value = String> {
        let fragment = prop_oneof![
            Just("<SCRATCHPAD_REASONING>".to_string()),
            Just("</SCRATCHPAD_REASONING>".to_string()),
            Just("<think>".to_string()),
            Just("</think>".to_string()),
            Just("<OUTPUT>".to_string()),
            Just("</OUTPUT>".to_string()),
            Just("<NEXT/>".to_string()),
            Just(". ".to_string()),
            Just("? ".to_string()),
            Just("!\n".to_string()),
            Just(".\r\n".to_string()),
            Just("\n\n".to_string()),
            Just("\r\n\r\n".to_string()),
            Just("é".to_string()),
            Just("日本語。".to_string()),
            Just("🦀".to_string()),
            Just("\u{a0}\u{2003}".to_string()),
            "[a-z ]{0,12}",
            any::<String>(),
        ];
        prop::collection::vec(fragment, 0..24).prop_map(|v| v.concat())
    }

    fn check_invariants(text: &str, opts: &SplitOptions) {
        let sentences = split_response(text, opts);
        let mut last_end = 0;
        for s in &sentences {
            assert!(s.start < s.end, "empty sentence {s:?}");
            assert!(s.start >= last_end, "overlap or disorder at {s:?}");
            assert!(text.is_char_boundary(s.start) && text.is_char_boundary(s.end));
            assert_eq!(&text[s.range()], s.text);
            assert_eq!(s.text.trim(), s.text, "untrimmed {s:?}");
            last_end = s.end;
        }
        let regions = reasoning_regions(text);
        for r in &regions {
            for (offset, c) in text[r.clone()].char_indices() {
                if c.is_whitespace() {
                    continue;
                }
                let at = r.start + offset;
                assert!(
                    sentences.iter().any(|s| s.start <= at && at < s.end),
                    "char {c:?} at {at} not covered in {text:?}: {sentences:?}"
                );
            }
        }
        // Sentences never leave the reasoning (so they never contain a tag).
        for s in &sentences {
            assert!(regions.iter().any(|r| r.start <= s.start && s.end <= r.end));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn invariants_hold_on_tricky_strings(
            text in tricky_string(),
            blank in any::<bool>(),
            min_chars in 0usize..30,
        ) {
            check_invariants(&text, &SplitOptions { blank_line_breaks: blank, min_chars });
        }

        #[test]
        fn invariants_hold_on_any_utf8(text in any::<String>()) {
            check_invariants(&text, &SplitOptions::default());
        }

        #[test]
        fn split_text_covers_everything(text in tricky_string()) {
            let sentences = split_text(&text, &SplitOptions::default());
            for (at, c) in text.char_indices() {
                if !c.is_whitespace() {
                    prop_assert!(sentences.iter().any(|s| s.start <= at && at < s.end));
                }
            }
        }
    }
}
