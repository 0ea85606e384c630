//! The trace data model shared by every other module.
//!
//! A [`Trace`] is one model response to one prompt. All positions in it are byte offsets into
//! [`Trace::response`], the raw text the model produced (scratchpad tags included), so that the
//! prefix P_i is always `response[..sentences[i].start]` and never a re-joined string.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};

/// Tag written in the `format` field of native trace files.
pub const TRACE_FORMAT: &str = "anchorscope-trace";
/// Version of the native trace format this build reads and writes.
pub const TRACE_FORMAT_VERSION: u32 = 1;
/// The `format` of our own JSON export (`export::json`): a trace with its analysis, never read
/// back as a trace (a directory scan skips it, opening one names what it is).
pub const EXPORT_FORMAT: &str = "anchorscope-export";

/// One chat message of the prompt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// How the reasoning is delimited inside the response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasoningStyle {
    /// `<SCRATCHPAD_REASONING>…</SCRATCHPAD_REASONING>` blocks, then `<OUTPUT>…</OUTPUT>`.
    #[default]
    Scratchpad,
    /// `<think>…</think>` then the answer.
    Think,
    /// No tags: the whole response is reasoning (e.g. a Thought Anchors `solution`).
    Plain,
}

/// Where a trace came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    #[default]
    Native,
    ThoughtAnchors,
    AfTranscript,
    Chat,
}

impl SourceKind {
    pub fn label(&self) -> &'static str {
        match self {
            SourceKind::Native => "native",
            SourceKind::ThoughtAnchors => "thought-anchors",
            SourceKind::AfTranscript => "af-transcript",
            SourceKind::Chat => "chat",
        }
    }
}

/// One sentence (chunk) of the reasoning, with its byte range in [`Trace::response`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sentence {
    pub start: usize,
    pub end: usize,
    pub text: String,
}

impl Sentence {
    pub fn range(&self) -> Range<usize> {
        self.start..self.end
    }
}

/// Sampler settings recorded with rollouts so a run can be reproduced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplerSettings {
    pub temperature: f64,
    pub top_p: f64,
    pub max_new_tokens: u32,
}

impl Default for SamplerSettings {
    fn default() -> Self {
        Self {
            temperature: 0.6,
            top_p: 0.95,
            max_new_tokens: 1024,
        }
    }
}

/// How a trace and its rollouts were produced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Model name or path that produced the trace / rollouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Hash of the model file (e.g. `sha256:…`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler: Option<SamplerSettings>,
    /// Classifier name -> version used for the labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub classifiers: BTreeMap<String, String>,
    /// Free text: how this was made (e.g. "hand-written example, no statistics").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
}

/// Per-sentence numbers imported from another tool's analysis (e.g. Thought Anchors
/// `chunks_labeled.json`), already converted to our sign convention.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportedSentenceMetrics {
    /// rate at position i (the chunk resampled), e.g. their `accuracy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resampling_importance: Option<f64>,
    /// Converted to our sign: positive pushes toward the behavior.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterfactual_importance: Option<f64>,
    /// The source's own KL (Thought Anchors: KL between final-answer distributions), never
    /// ours: shown in its own column labelled as theirs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterfactual_kl: Option<f64>,
    /// Forced-answer importance, converted to our sign where the source says how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced_importance: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub different_trajectories_fraction: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overdeterminedness: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The source's own index of this chunk (Thought Anchors `chunk_idx`, which can have gaps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_idx: Option<usize>,
    /// Sentences (our indices) this one depends on, from the source's `depends_on` (their
    /// labeller numbers chunks by position in the labelled list).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<usize>,
    /// The source's short summary of the chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Replacement sentences T_i the other tool sampled (no labels).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replacements: Vec<String>,
}

/// Metrics imported for one behavior, with a note on where they came from and how they were
/// converted (shown in the UI next to the numbers).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportedMetrics {
    pub behavior: String,
    pub note: String,
    /// What the import changed or could not decide (realignment, placeholders), one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// One entry per sentence, same order as [`Trace::sentences`].
    pub sentences: Vec<ImportedSentenceMetrics>,
}

/// One model response to one prompt, split into sentences.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub format: String,
    pub version: u32,
    pub id: String,
    #[serde(default)]
    pub source: SourceKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Free-form labels such as `tier = "free"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    pub prompt: Vec<Message>,
    #[serde(default)]
    pub reasoning_style: ReasoningStyle,
    /// The raw text the model produced, tags included. All offsets point into it.
    pub response: String,
    pub sentences: Vec<Sentence>,
    #[serde(default)]
    pub manifest: Manifest,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imported: Vec<ImportedMetrics>,
    /// Set when this trace is an intervention on another one (a sentence deleted or rewritten,
    /// the tier swapped): its parent and the edit (trace::intervention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derived: Option<crate::trace::intervention::Derivation>,
}

impl Trace {
    /// A new native trace; sentences are left empty for the splitter to fill.
    pub fn new(id: impl Into<String>, prompt: Vec<Message>, response: impl Into<String>) -> Self {
        Self {
            format: TRACE_FORMAT.to_string(),
            version: TRACE_FORMAT_VERSION,
            id: id.into(),
            source: SourceKind::Native,
            model: None,
            meta: BTreeMap::new(),
            prompt,
            reasoning_style: ReasoningStyle::Scratchpad,
            response: response.into(),
            sentences: Vec::new(),
            manifest: Manifest::default(),
            imported: Vec::new(),
            derived: None,
        }
    }

    /// Number of positions (0..=n).
    pub fn positions(&self) -> usize {
        self.sentences.len() + 1
    }

    /// The response cut at the start of sentence `position` (P_i without the prompt).
    /// `position == sentences.len()` gives the response up to the end of the last sentence.
    pub fn prefix(&self, position: usize) -> &str {
        let cut = match self.sentences.get(position) {
            Some(s) => s.start,
            // A derived trace ends where its edit ends and sampling goes on from there: its
            // whole text is the prefix (the opening tag included when no sentence is left).
            None if self.derived.is_some() => self.response.len(),
            None => self.sentences.last().map_or(0, |s| s.end),
        };
        &self.response[..cut]
    }

    /// The final output: text after the last `</SCRATCHPAD_REASONING>` (inside `<OUTPUT>` if
    /// present) or after `</think>`; empty when the response has none.
    pub fn final_output(&self) -> &str {
        crate::trace::final_output(&self.response)
    }
}

/// A yes/no label, or invalid when the classifier could not decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelValue {
    Yes,
    No,
    Invalid,
}

/// A behavior's label of one rollout, with the classifier that produced it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Label {
    pub value: LabelValue,
    /// e.g. `compliance-tag`, `af-rules`.
    pub classifier: String,
    pub version: String,
    /// Optional evidence (quoted spans, criterion results) for auditing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
}

/// Why a rollout stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End-of-sequence token or end of output.
    Stop,
    /// Token cap reached.
    Length,
    /// Stopped early once every requested behavior was decided.
    Decided,
    /// Imported from elsewhere; unknown.
    Unknown,
}

/// The pseudo run id of rollouts read from another tool's files (a Thought Anchors folder's
/// `chunk_{i}/solutions.json`). Their record is built from the trace at load time, never
/// written: the source files are the provenance.
pub const IMPORTED_RUN: &str = "imported";

/// One sampled continuation of prefix P_position. One line of the rollout store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub position: usize,
    pub seed: u64,
    /// T_i: the first sentence of the continuation.
    pub replacement: String,
    /// The full continuation text (reasoning rest + output).
    pub text: String,
    pub tokens: u32,
    pub finish: FinishReason,
    /// behavior name -> label.
    pub labels: BTreeMap<String, Label>,
    /// Cosine similarity of T_i to S_i (all-MiniLM-L6-v2), when computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f32>,
    /// The id of the run that sampled it (see `store::runs`); `None` for rollouts stored
    /// before runs were recorded, which pool as one "legacy" run of unknown settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// For a rollout of a trace derived by deleting S_i (trace::intervention): the largest
    /// similarity of a sentence of its reasoning to S_i, so resilience (does the deleted
    /// content come back?) can be counted at any threshold without embedding again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurrence: Option<f32>,
}

/// Suffix of the label key that holds a person's verdict on a behavior (`store::human`).
pub const HUMAN_SUFFIX: &str = " (human)";

impl Rollout {
    /// The label rates count: a person's verdict where there is one, else the classifier's.
    pub fn label(&self, behavior: &str) -> Option<LabelValue> {
        self.human_label(behavior)
            .or_else(|| self.labels.get(behavior))
            .map(|l| l.value)
    }

    /// An unlabelled rollout that stopped normally, for unit tests (here, and in the crates
    /// above through the `test-support` feature).
    #[cfg(any(test, feature = "test-support"))]
    pub fn bare(position: usize, seed: u64, replacement: &str) -> Self {
        Self {
            position,
            seed,
            replacement: replacement.into(),
            text: String::new(),
            tokens: 0,
            finish: FinishReason::Stop,
            labels: BTreeMap::new(),
            similarity: None,
            run: None,
            recurrence: None,
        }
    }

    /// A person's verdict on `behavior`, when one was given.
    pub fn human_label(&self, behavior: &str) -> Option<&Label> {
        self.labels.get(&format!("{behavior}{HUMAN_SUFFIX}"))
    }
}
