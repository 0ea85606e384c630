//! Traces: the data model, the native format, importers and the sentence splitter.

pub mod import;
pub mod intervention;
pub mod model;
pub mod split;
pub mod tags;
pub mod terminal;

pub use model::*;

pub use tags::final_output;

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
