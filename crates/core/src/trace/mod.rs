//! Traces: the data model, the native format, importers and the sentence splitter.

pub mod import;
pub mod model;
pub mod split;
pub mod terminal;

pub use model::*;

/// The final output of a raw response: the text after the last `</SCRATCHPAD_REASONING>`
/// (the inside of `<OUTPUT>…</OUTPUT>` when present) or after the last `</think>`, trimmed.
/// Empty when the response has no closing reasoning tag and no `<OUTPUT>`.
pub fn final_output(response: &str) -> &str {
    let after = if let Some(i) = response.rfind("</SCRATCHPAD_REASONING>") {
        &response[i + "</SCRATCHPAD_REASONING>".len()..]
    } else if let Some(i) = response.rfind("</think>") {
        &response[i + "</think>".len()..]
    } else if response.contains("<OUTPUT>") {
        response
    } else {
        return "";
    };
    if let Some(o) = after.rfind("<OUTPUT>") {
        let inner = &after[o + "<OUTPUT>".len()..];
        let inner = match inner.find("</OUTPUT>") {
            Some(c) => &inner[..c],
            None => inner,
        };
        return inner.trim();
    }
    after.trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_inside_output_tags_after_last_scratchpad() {
        let r = "<SCRATCHPAD_REASONING>a</SCRATCHPAD_REASONING>\n<SCRATCHPAD_REASONING>b</SCRATCHPAD_REASONING>\n<OUTPUT>\n<rejected/>\n</OUTPUT>";
        assert_eq!(final_output(r), "<rejected/>");
    }

    #[test]
    fn output_after_think() {
        assert_eq!(final_output("<think>x</think>\n\nAnswer: 4"), "Answer: 4");
        assert_eq!(final_output("no tags at all"), "");
    }
}
