//! The language model: Llama / Qwen2 / Qwen3 decoder over GGUF (quantized) or safetensors
//! weights, with a prefix KV cache shared by batched rollouts.
//!
//! Our own small decoder on candle tensors (not candle-transformers' models, whose KV cache is
//! private): a [`Prefix`] is plain shared tensors, so one forward pass over a whole trace gives
//! the cache of every position (truncation is a view), and a [`Batch`] of N rollouts reads that
//! one prefix while keeping only its own new tokens' KV per row.

mod attention;
mod attention_tiles;
mod config;
mod forward;
mod gguf;
mod hf;
mod kernel;
/// Tiny random-weight models written to disk, for tests (here and in the crates above,
/// through the `test-support` feature); never in a normal build.
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
mod weights;

use std::path::Path;

use candle_core::{Device, Tensor};

pub use config::{Arch, Config};
use forward::{Kv, Model, Segment};

use super::EngineError;

/// What the rest of the engine needs to know about a loaded model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    /// e.g. "SmolLM2-135M-Instruct" (GGUF general.name or the directory name).
    pub name: String,
    /// "llama", "qwen2", "qwen3".
    pub arch: String,
    pub vocab_size: usize,
    /// Maximum positions (context length).
    pub max_context: usize,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

/// How to hold the weights.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// On CPU, a GGUF model's layer matrices that our block kernel does not take (neither
    /// AVX-512 nor AVX2 with FMA, other block types) are expanded to f32 when they take at most
    /// this many bytes that way: f32 gemm is several times faster than candle's quantized
    /// kernels for batched rows and prefill, at 4-8x the memory. 0 keeps them quantized.
    pub dense_cpu_limit: usize,
    /// `extend` runs long inputs in chunks of this many tokens, so the attention scores of
    /// a whole trace (tokens × context per head) never have to fit in memory at once.
    pub prefill_chunk: usize,
    /// On CPUs with AVX-512 or AVX2 with FMA, GGUF matrices of type Q4_0/Q4_1/Q8_0 are
    /// multiplied straight from their blocks by our kernel at every row count (least memory,
    /// f32 arithmetic, faster than f32 gemm); this takes precedence over `dense_cpu_limit` for
    /// those matrices. Off: candle's kernels only.
    pub block_kernel: bool,
    /// On CPU, attention (a decoding step's, each row over its prefix and own tokens, and a
    /// prefill's causal one) runs in one pass instead of a series of tensor operations (the
    /// same arithmetic up to summation order, far fewer copies).
    pub fused_attention: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        // As f32 the layer matrices of SmolLM2-135M take ~0.4 GB, those of Qwen2.5-0.5B ~1.4 GB:
        // both are expanded. Kept quantized, Qwen2.5-Coder-0.5B Q4_K_M (mostly Q5_0 matrices,
        // which candle multiplies without SIMD) decoded 0.1 tokens/s on a 2-core CPU, against
        // ~14 expanded with 16 rows; 1.5B-class models (~5 GB) stay quantized.
        LoadOptions {
            dense_cpu_limit: 2 << 30,
            prefill_chunk: 256,
            block_kernel: true,
            fused_attention: true,
        }
    }
}

impl LoadOptions {
    /// The defaults, with the CPU matrix path chosen by `ANCHORSCOPE_CPU_KERNEL` (for
    /// benchmarks and comparisons): `blocks` (default: our block kernel where it applies, f32
    /// gemm for the rest), `f32` (every matrix expanded for candle's gemm) or `quantized`
    /// (candle's quantized kernels).
    pub fn from_env() -> Self {
        let mut opts = LoadOptions::default();
        match std::env::var("ANCHORSCOPE_CPU_KERNEL").as_deref() {
            Ok("f32") => {
                opts.block_kernel = false;
                opts.dense_cpu_limit = usize::MAX;
            }
            Ok("quantized") => {
                opts.block_kernel = false;
                opts.dense_cpu_limit = 0;
            }
            _ => {}
        }
        opts
    }
}

/// The KV cache of a token sequence (all layers). Cheap to clone and to truncate: tensors are
/// shared (Arc) and truncation takes views, never copies.
#[derive(Clone, Debug)]
pub struct Prefix {
    len: usize,
    /// Per layer (K, V), each [1, n_kv_heads, len, head_dim]; empty when `len` is 0.
    kv: Kv,
}

impl Prefix {
    /// Number of tokens cached.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The cache of the first `len` tokens (a view).
    pub fn truncate(&self, len: usize) -> Prefix {
        let len = len.min(self.len);
        if len == 0 {
            return Prefix::empty();
        }
        if len == self.len {
            return self.clone();
        }
        // narrow only fails on an out-of-range length, excluded above.
        let kv = self
            .kv
            .iter()
            .filter_map(|(k, v)| Some((k.narrow(2, 0, len).ok()?, v.narrow(2, 0, len).ok()?)))
            .collect();
        Prefix { len, kv }
    }

    fn empty() -> Prefix {
        Prefix {
            len: 0,
            kv: Vec::new(),
        }
    }
}

/// Rollouts decoding together in lockstep. Their rows are grouped by the [`Prefix`] they
/// continue (one group per position when a sweep batches several positions): each prefix's KV
/// is stored once however many rows read it, and each row keeps only its own new tokens' KV.
#[derive(Debug)]
pub struct Batch {
    /// (prefix, number of consecutive rows continuing it), in row order; no empty groups.
    groups: Vec<(Prefix, usize)>,
    rows: usize,
    /// Tokens each row has fed since its prefix.
    new_tokens: usize,
    /// Per layer (K, V), each [rows, n_kv_heads, capacity, head_dim] with the first
    /// `new_tokens` positions filled (see `forward::append_position`); empty before the first
    /// step.
    kv: Kv,
}

impl Batch {
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Tokens fed to each row so far (the rows move in lockstep).
    pub fn new_tokens(&self) -> usize {
        self.new_tokens
    }

    /// Floats held by the rows' own KV (all layers, allocated capacity included): grows with
    /// rows × new tokens; the shared prefixes are not counted because they are not copied.
    pub fn own_kv_elements(&self) -> usize {
        self.kv
            .iter()
            .map(|(k, v)| k.elem_count() + v.elem_count())
            .sum()
    }

    /// Positions each row's own KV buffers will hold (filled or not) once `new_tokens` tokens
    /// are in: what a memory budget must count per row.
    pub fn own_kv_capacity_for(new_tokens: usize) -> usize {
        forward::kv_capacity_for(new_tokens)
    }

    /// Positions each row's own KV buffers hold (filled or not): at least `new_tokens`, at
    /// most twice that or the first capacity.
    pub fn own_kv_capacity(&self) -> usize {
        self.kv
            .first()
            .and_then(|(k, _)| k.dim(2).ok())
            .unwrap_or(0)
    }

    /// The prefix the first group of rows continues (the only one for a one-prefix batch).
    pub fn prefix(&self) -> &Prefix {
        &self.groups[0].0
    }

    /// Rows per group, in row order.
    pub fn group_rows(&self) -> Vec<usize> {
        self.groups.iter().map(|(_, n)| *n).collect()
    }

    /// Positions the longest row attends to: its prefix + its own tokens.
    pub fn context_len(&self) -> usize {
        self.groups.iter().map(|(p, _)| p.len).max().unwrap_or(0) + self.new_tokens
    }

    /// Keep only the rows whose flag is true (finished rollouts leave the batch).
    pub fn retain(&mut self, keep: &[bool]) -> Result<(), EngineError> {
        if keep.len() != self.rows {
            return Err(EngineError::Other(format!(
                "retain got {} flags for a batch of {} rows",
                keep.len(),
                self.rows
            )));
        }
        let idx: Vec<u32> = (0..keep.len() as u32)
            .filter(|&i| keep[i as usize])
            .collect();
        if idx.len() == self.rows {
            return Ok(());
        }
        let mut first = 0;
        for (_, n) in self.groups.iter_mut() {
            let kept = keep[first..first + *n].iter().filter(|k| **k).count();
            first += *n;
            *n = kept;
        }
        self.rows = idx.len();
        if idx.is_empty() {
            // Keep one (empty) group so `prefix()` still has an answer.
            self.groups.truncate(1);
            self.kv.clear();
            return Ok(());
        }
        self.groups.retain(|(_, n)| *n > 0);
        if let Some((k0, _)) = self.kv.first() {
            let idx = Tensor::new(idx.as_slice(), k0.device())?;
            for (k, v) in self.kv.iter_mut() {
                *k = k.index_select(&idx, 0)?;
                *v = v.index_select(&idx, 0)?;
            }
        }
        Ok(())
    }
}

/// FLOP/s of our CPU block kernel (see `kernel.rs`) multiplying m rows by a random Q4_1
/// [n, k] matrix, timed for at least `min_time`: (repeats, FLOP/s); None where it does not run.
pub fn block_kernel_rate(
    shape: (usize, usize, usize),
    min_time: std::time::Duration,
) -> Option<(usize, f64)> {
    kernel::measure_q4_1(shape, min_time)
}

/// Runs `f` on a thread of rayon's pool (the calling thread waits). A forward pass starts
/// ~150 parallel matrix products and attention passes; started from outside the pool, each one
/// would hand its work to the pool's threads and put the caller to sleep until they finish (two
/// context switches each, ~12% of a 16-row step on 2 cores). From inside, the thread that runs
/// the pass works on its share itself and only the other threads are woken.
fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

/// A loaded model.
pub struct Lm {
    info: ModelInfo,
    model: Model,
    prefill_chunk: usize,
}

impl Lm {
    /// Load a GGUF file or a Hugging Face-style directory (config.json + *.safetensors).
    pub fn load(path: &Path, device: &Device) -> Result<Self, EngineError> {
        Self::load_with(path, device, &LoadOptions::from_env())
    }

    pub fn load_with(
        path: &Path,
        device: &Device,
        opts: &LoadOptions,
    ) -> Result<Self, EngineError> {
        let (cfg, w, info) = if path.is_dir() {
            hf::load(path, device)?
        } else {
            gguf::load(path, device, opts)?
        };
        Ok(Lm {
            info,
            prefill_chunk: opts.prefill_chunk.max(1),
            model: Model {
                cfg,
                w,
                device: device.clone(),
                fused_attention: opts.fused_attention,
            },
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// How the weight matrices are held and multiplied, with counts, e.g.
    /// "120 × Q4_1 blocks (AVX2 kernel); 1 × Q8_0 blocks (AVX2 kernel)".
    pub fn weights_summary(&self) -> String {
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        let w = &self.model.w;
        let mut all: Vec<&weights::Matrix> = vec![&w.output.w];
        for l in &w.layers {
            all.extend(l.qkv.matrices());
            all.push(&l.o.w);
            all.extend(l.gate_up.matrices());
            all.push(&l.down.w);
        }
        for m in all {
            *counts.entry(m.describe()).or_default() += 1;
        }
        counts
            .iter()
            .map(|(d, n)| format!("{n} × {d}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The hyper-parameters read from the model file.
    pub fn config(&self) -> &Config {
        &self.model.cfg
    }

    pub fn device(&self) -> &Device {
        &self.model.device
    }

    /// Run `tokens` from scratch; the cache of all of them.
    pub fn prefill(&self, tokens: &[u32]) -> Result<Prefix, EngineError> {
        self.extend(&Prefix::empty(), tokens).map(|(p, _)| p)
    }

    /// Run `tokens` after `prefix`: the cache of prefix + tokens and the logits (f32, [vocab])
    /// predicted after the last token. `tokens` must not be empty.
    pub fn extend(&self, prefix: &Prefix, tokens: &[u32]) -> Result<(Prefix, Tensor), EngineError> {
        if tokens.is_empty() {
            return Err(EngineError::Other("extend needs at least one token".into()));
        }
        self.check_context(prefix.len, tokens.len())?;
        self.check_tokens(tokens)?;
        let mut out = prefix.clone();
        let mut logits = None;
        for chunk in tokens.chunks(self.prefill_chunk) {
            let (kv, l) = on_pool(|| self.model.extend(&out.kv, out.len, chunk))?;
            out = Prefix {
                len: out.len + chunk.len(),
                kv,
            };
            logits = Some(l);
        }
        // tokens is not empty, so there was at least one chunk.
        let logits = logits.ok_or_else(|| EngineError::Other("extend: no tokens".into()))?;
        Ok((out, logits))
    }

    /// Start `n` rows decoding from `prefix` (no forward pass yet).
    ///
    /// To sample continuations of the first `p` tokens of a prefilled sequence, start from
    /// `full.truncate(p - 1)` and feed token `p - 1` to every row in the first [`Lm::step`]:
    /// its logits are the distribution of the first new token.
    pub fn batch(&self, prefix: &Prefix, n: usize) -> Result<Batch, EngineError> {
        self.batch_of(&[(prefix, n)])
    }

    /// Start rows continuing several prefixes at once (`n` rows for each prefix, in this row
    /// order): one decoding step then serves every group, so the weights are read once for all
    /// rows. Groups with no rows are dropped.
    pub fn batch_of(&self, groups: &[(&Prefix, usize)]) -> Result<Batch, EngineError> {
        let groups: Vec<(Prefix, usize)> = groups
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(p, n)| ((*p).clone(), *n))
            .collect();
        let rows = groups.iter().map(|(_, n)| n).sum();
        if groups.is_empty() {
            // A batch always has a group, so `prefix()` has something to return.
            return Ok(Batch {
                groups: vec![(Prefix::empty(), 0)],
                rows: 0,
                new_tokens: 0,
                kv: Vec::new(),
            });
        }
        Ok(Batch {
            groups,
            rows,
            new_tokens: 0,
            kv: Vec::new(),
        })
    }

    /// Feed one token per row; logits (f32, [rows, vocab]) for each row's next token.
    pub fn step(&self, batch: &mut Batch, tokens: &[u32]) -> Result<Tensor, EngineError> {
        if batch.rows == 0 {
            return Err(EngineError::Other(
                "step on a batch with no rows left".into(),
            ));
        }
        if tokens.len() != batch.rows {
            return Err(EngineError::Other(format!(
                "step got {} tokens for a batch of {} rows",
                tokens.len(),
                batch.rows
            )));
        }
        self.check_context(batch.context_len(), 1)?;
        self.check_tokens(tokens)?;
        let segments: Vec<Segment<'_>> = batch
            .groups
            .iter()
            .map(|(p, n)| Segment {
                kv: &p.kv,
                past: p.len,
                rows: *n,
            })
            .collect();
        let (kv, logits) = on_pool(|| {
            self.model
                .step(&segments, &batch.kv, batch.new_tokens, tokens)
        })?;
        batch.kv = kv;
        batch.new_tokens += 1;
        Ok(logits)
    }

    fn check_context(&self, cached: usize, new: usize) -> Result<(), EngineError> {
        if cached + new > self.info.max_context {
            return Err(EngineError::ContextOverflow {
                tokens: cached,
                max_new: new,
                context: self.info.max_context,
            });
        }
        Ok(())
    }

    fn check_tokens(&self, tokens: &[u32]) -> Result<(), EngineError> {
        match tokens.iter().find(|&&t| t as usize >= self.info.vocab_size) {
            Some(t) => Err(EngineError::Other(format!(
                "token id {t} is outside the model's vocabulary of {} ({})",
                self.info.vocab_size, self.info.name
            ))),
            None => Ok(()),
        }
    }
}
