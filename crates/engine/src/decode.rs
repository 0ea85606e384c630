//! One decode session for every caller: the worker's rollouts, `collect` and `serve`. Rows that
//! continue one or more cached prefixes decode together (one batched step per token, the
//! weights read once for all rows), each row with its own seeded generator, so a row draws the
//! same tokens whoever asks for it. What differs between callers is when a row stops and what
//! becomes of it: their [`StopRule`].

use candle_core::{DType, Tensor};
use rayon::prelude::*;

use crate::lm::{Lm, Prefix};
use crate::sampler::{sample_token, Rng};
use crate::tokenizer::{TextTokenizer, TokenStream};
use crate::EngineError;

/// Rows that continue one cached prefix: the prefix, the logits after its last token, one seed
/// per row, and the caller's slot for them (e.g. the position they resample).
pub struct Start {
    pub slot: usize,
    pub prefix: Prefix,
    pub logits: Tensor,
    pub seeds: Vec<u64>,
}

/// One row being decoded.
pub struct Row {
    /// The slot of the [`Start`] it continues.
    pub slot: usize,
    /// Its index among all rows of the session, in the order of the starts and their seeds.
    pub index: usize,
    pub seed: u64,
    rng: Rng,
    /// The tokens sampled so far (an end-of-text token is never pushed).
    pub tokens: Vec<u32>,
    /// Their text, decoded incrementally.
    pub stream: TokenStream,
}

/// The model, tokenizer and end-of-text tokens a session decodes with.
pub struct Decoder<'a> {
    pub lm: &'a Lm,
    pub tokenizer: &'a TextTokenizer,
    pub eos: &'a [u32],
    /// End-of-text tokens get no probability: every row runs until its rule stops it
    /// (benchmarks generating an exact token count).
    pub mask_eos: bool,
    pub temperature: f64,
    pub top_p: f64,
}

/// A caller's stop rule and sink. `F` is its own finish reason.
pub trait StopRule<F> {
    /// Called after a new token was pushed onto `row` (its text already holds it): `Some`
    /// stops the row. The rule may cut the text (at a stop string, say).
    fn after_token(&mut self, row: &mut Row) -> Option<F>;
    /// The row sampled an end-of-text token: how it finishes.
    fn end_of_text(&mut self, row: &mut Row) -> F;
    /// A row has finished (in the step it finished, in row order).
    fn finished(&mut self, row: Row, finish: F) -> Result<(), EngineError>;
    /// Once per step, before its tokens are looked at: `rows` tokens were just sampled.
    fn sampled(&mut self, _rows: usize) {}
    /// After each step: false ends the session early (cancelled, client gone), leaving the
    /// unfinished rows unreported.
    fn proceed(&mut self) -> bool {
        true
    }
}

/// Whether the session ran until every row finished or was ended early by its rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    AllFinished,
    Early,
}

impl Decoder<'_> {
    /// Decode every row of every start until its rule stops it.
    pub fn run<F>(
        &self,
        starts: Vec<Start>,
        rule: &mut dyn StopRule<F>,
    ) -> Result<Ended, EngineError> {
        let mut rows: Vec<Row> = Vec::new();
        let mut next: Vec<u32> = Vec::new();
        for start in &starts {
            let mut first = start
                .logits
                .flatten_all()?
                .to_dtype(DType::F32)?
                .to_vec1::<f32>()?;
            self.mask(&mut first);
            for &seed in &start.seeds {
                let mut rng = Rng::new(seed);
                next.push(sample_token(&first, self.temperature, self.top_p, &mut rng));
                rows.push(Row {
                    slot: start.slot,
                    index: rows.len(),
                    seed,
                    rng,
                    tokens: Vec::new(),
                    stream: TokenStream::default(),
                });
            }
        }
        if rows.is_empty() {
            return Ok(Ended::AllFinished);
        }
        let groups: Vec<(&Prefix, usize)> =
            starts.iter().map(|s| (&s.prefix, s.seeds.len())).collect();
        let mut batch = self.lm.batch_of(&groups)?;
        loop {
            rule.sampled(rows.len());
            let mut finished = Vec::new();
            for (k, row) in rows.iter_mut().enumerate() {
                let token = next[k];
                let finish = if self.eos.contains(&token) && !self.mask_eos {
                    Some(rule.end_of_text(row))
                } else {
                    row.tokens.push(token);
                    row.stream.push(self.tokenizer, &row.tokens)?;
                    rule.after_token(row)
                };
                if let Some(finish) = finish {
                    finished.push((k, finish));
                }
            }
            let mut keep = vec![true; rows.len()];
            for &(k, _) in &finished {
                keep[k] = false;
            }
            // Take the finished rows out (back to front keeps indices valid), report in order.
            let mut done = Vec::new();
            for (k, finish) in finished.into_iter().rev() {
                next.remove(k);
                done.push((rows.remove(k), finish));
            }
            for (row, finish) in done.into_iter().rev() {
                rule.finished(row, finish)?;
            }
            if rows.is_empty() {
                return Ok(Ended::AllFinished);
            }
            if !rule.proceed() {
                return Ok(Ended::Early);
            }
            if keep.iter().any(|k| !k) {
                batch.retain(&keep)?;
            }
            let logits = self.lm.step(&mut batch, &next)?;
            let mut logits = logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
            if logits.len() != rows.len() {
                return Err(EngineError::Other(format!(
                    "the model returned {} rows of logits for {} rows",
                    logits.len(),
                    rows.len()
                )));
            }
            for l in logits.iter_mut() {
                self.mask(l);
            }
            next = self.sample_rows(&logits, &mut rows);
        }
    }

    /// With `mask_eos`, end-of-text tokens get no probability.
    fn mask(&self, logits: &mut [f32]) {
        if self.mask_eos {
            for &id in self.eos {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
    }

    /// The next token of every row (top-p over its logits with its own generator). Rows are
    /// independent, so they are sampled on the shared thread pool: the softmax over a
    /// 50 000-token vocabulary per row is otherwise a serial tail after every step.
    fn sample_rows(&self, logits: &[Vec<f32>], rows: &mut [Row]) -> Vec<u32> {
        let (t, p) = (self.temperature, self.top_p);
        rows.par_iter_mut()
            .zip(logits.par_iter())
            .with_min_len(4)
            .map(|(r, l)| sample_token(l, t, p, &mut r.rng))
            .collect()
    }
}
