//! Split a raw response into the two parts classifiers look at: the reasoning and the output.
//!
//! The reasoning is the inside of every `<SCRATCHPAD_REASONING>` block (or, when the response has
//! none, every `<think>` block), joined with blank lines. A block whose closing tag is missing runs
//! to the end of the text, because a rollout cut at the token cap is still worth judging.
//! The output is [`crate::trace::final_output`]. The tags are those of `trace::tags`.

/// The parts of one response that classifiers read. `None` means the part is absent (or only
/// whitespace), which makes a classifier that needs it answer "invalid".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseParts<'a> {
    pub reasoning: Option<String>,
    pub output: Option<&'a str>,
}

impl<'a> ResponseParts<'a> {
    /// Extract the reasoning and the output of a raw response (tags included).
    pub fn of(response: &'a str) -> Self {
        let output = crate::trace::final_output(response);
        Self {
            reasoning: reasoning(response),
            output: (!output.trim().is_empty()).then_some(output),
        }
    }
}

pub use crate::trace::tags::reasoning;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_every_scratchpad_block_and_finds_output() {
        let r = "<SCRATCHPAD_REASONING>First block.</SCRATCHPAD_REASONING>\n\
                 <SCRATCHPAD_REASONING> Second block. </SCRATCHPAD_REASONING>\n\
                 <OUTPUT><rejected/></OUTPUT>";
        let p = ResponseParts::of(r);
        assert_eq!(
            p.reasoning.as_deref(),
            Some("First block.\n\nSecond block.")
        );
        assert_eq!(p.output, Some("<rejected/>"));
    }

    #[test]
    fn unclosed_block_runs_to_the_end_and_has_no_output() {
        let p = ResponseParts::of("<SCRATCHPAD_REASONING>cut off at the token cap");
        assert_eq!(p.reasoning.as_deref(), Some("cut off at the token cap"));
        assert_eq!(p.output, None);
    }

    #[test]
    fn think_blocks_when_no_scratchpad() {
        let p = ResponseParts::of("<think>hmm, 2+2</think>\n\n4");
        assert_eq!(p.reasoning.as_deref(), Some("hmm, 2+2"));
        assert_eq!(p.output, Some("4"));
    }

    #[test]
    fn no_tags_or_blank_blocks_mean_no_reasoning() {
        assert_eq!(reasoning("plain text"), None);
        assert_eq!(reasoning("<think>  \n </think>answer"), None);
        assert_eq!(ResponseParts::of("").output, None);
    }
}
