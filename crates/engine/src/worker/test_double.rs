//! TEST DOUBLE — never used outside tests. A deterministic [`Generator`] that needs no model:
//! each seed's continuation is a fixed script derived from the seed, emitted a word per "step",
//! so the job logic (top-up, cancel between steps, early stop, store, progress, labels) can be
//! tested without candle.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::EngineError;
use anchorscope_core::trace::{FinishReason, SamplerSettings, Trace};

use super::job::{Control, Embedder, Generator, Sampled};

/// Scripted continuations: even seeds comply, odd seeds refuse; rows have different lengths so
/// they finish on different steps.
#[derive(Default)]
pub struct ScriptedGenerator {
    /// Steps run so far (shared so a test can read it after moving the double into a worker).
    pub steps: Arc<AtomicUsize>,
    /// Fail every call for this position.
    pub fail_position: Option<usize>,
    /// Panic on every call for this position (a bug in model code).
    pub panic_position: Option<usize>,
    /// Per position: `Some(true)` every row complies, `Some(false)` none does, `None` (or a
    /// position past the end) by seed parity. Gives a trace known rates for adaptive jobs.
    pub comply_at: Vec<Option<bool>>,
}

impl ScriptedGenerator {
    /// The full continuation of `seed`, as words; it complies as `comply` says (`None`: even
    /// seeds comply, odd ones refuse).
    pub fn script_with(seed: u64, comply: Option<bool>) -> Vec<String> {
        let filler = (seed % 4) as usize; // 0..=3 extra words: rows end on different steps
        let mut words = vec![format!("Replacement {}.", seed % 3)];
        words.extend((0..filler).map(|i| format!("w{i}")));
        words.push("</SCRATCHPAD_REASONING>\n<OUTPUT>".into());
        words.push(if comply.unwrap_or(seed.is_multiple_of(2)) {
            "<request_fully_accepted/>".into()
        } else {
            "<rejected/>".into()
        });
        words.push("tail".into());
        words.push("</OUTPUT>".into());
        words
    }
}

impl Generator for ScriptedGenerator {
    fn sample(
        &mut self,
        _trace: &Trace,
        position: usize,
        seeds: &[u64],
        settings: &SamplerSettings,
        control: &mut dyn Control,
    ) -> Result<(), EngineError> {
        if self.panic_position == Some(position) {
            panic!("scripted panic at position {position}");
        }
        if self.fail_position == Some(position) {
            return Err(EngineError::ContextOverflow {
                tokens: 9000,
                max_new: settings.max_new_tokens as usize,
                context: 8192,
            });
        }
        let mut rows: Vec<(u64, Vec<String>, usize, String)> = seeds
            .iter()
            .map(|&s| {
                let comply = self.comply_at.get(position).copied().flatten();
                (s, Self::script_with(s, comply), 0, String::new())
            })
            .collect();
        while !rows.is_empty() {
            self.steps.fetch_add(1, Ordering::SeqCst);
            control.tokens(rows.len());
            let mut still = Vec::new();
            for (seed, words, mut next, mut text) in rows {
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push_str(&words[next]);
                next += 1;
                let finish = if next == words.len() {
                    Some(FinishReason::Stop)
                } else if next as u32 >= settings.max_new_tokens {
                    Some(FinishReason::Length)
                } else if control.decided(&text) {
                    Some(FinishReason::Decided)
                } else {
                    None
                };
                match finish {
                    Some(finish) => control.finished(Sampled {
                        seed,
                        text,
                        tokens: next as u32,
                        finish,
                    })?,
                    None => still.push((seed, words, next, text)),
                }
            }
            rows = still;
            if !rows.is_empty() && control.cancelled() {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// TEST DOUBLE embedder: a bag-of-letters vector, L2-normalised (equal texts → similarity 1).
pub struct LetterEmbedder;

impl Embedder for LetterEmbedder {
    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EngineError> {
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = [0f32; 26];
                for c in t.chars().filter(char::is_ascii_alphabetic) {
                    v[(c.to_ascii_lowercase() as u8 - b'a') as usize] += 1.0;
                }
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-9);
                v.iter().map(|x| x / norm).collect()
            })
            .collect())
    }
}
