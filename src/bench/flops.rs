//! Model arithmetic for the roofline: FLOPs per generated token, KV bytes per token, and a
//! measured matmul rate on the benchmark's device.

use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::engine::lm::Config;
use crate::engine::EngineError;

/// Weights that take part in matrix products for one token: q, k, v, o, gate, up, down of every
/// layer, and the LM head (hidden × vocab). The embedding lookup and the norms are not products.
pub fn matmul_params(cfg: &Config) -> u64 {
    let (h, hd) = (cfg.hidden as u64, cfg.head_dim as u64);
    let q_out = cfg.n_heads as u64 * hd;
    let kv_out = cfg.n_kv_heads as u64 * hd;
    // q and o are h×q_out each, k and v h×kv_out each, the MLP three h×ffn.
    let per_layer = 2 * h * q_out + 2 * h * kv_out + 3 * h * cfg.ffn as u64;
    cfg.n_layers as u64 * per_layer + h * cfg.vocab_size as u64
}

/// FLOPs to decode one token that attends to `context` positions: 2 per weight in the matrix
/// products (a multiply and an add), plus attention — q·k over the context and the weighted sum
/// of v, 2 × head_dim FLOPs each per query head and position.
pub fn decode_flops_per_token(cfg: &Config, context: usize) -> f64 {
    let attention =
        cfg.n_layers as f64 * cfg.n_heads as f64 * 2.0 * 2.0 * cfg.head_dim as f64 * context as f64;
    2.0 * matmul_params(cfg) as f64 + attention
}

/// Mean context of a rollout of `new_tokens` from a `prefix`-token prompt: token t (0-based)
/// attends to prefix + t + 1 positions.
pub fn mean_decode_context(prefix: usize, new_tokens: usize) -> f64 {
    if new_tokens == 0 {
        return prefix as f64;
    }
    prefix as f64 + (new_tokens as f64 + 1.0) / 2.0
}

/// Elements of K and V (all layers) that one token adds to a cache.
pub fn kv_elements_per_token(cfg: &Config) -> u64 {
    2 * cfg.n_layers as u64 * cfg.n_kv_heads as u64 * cfg.head_dim as u64
}

/// One measured matmul shape: C[m, n] = A[m, k] · B[k, n].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MatmulRate {
    /// `candle` (ours) or `torch` (the peer's).
    #[serde(default)]
    pub library: String,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub dtype: String,
    pub repeats: usize,
    pub flops_per_s: f64,
}

/// Time f32 matmuls of one shape on `device` for at least `min_time` (after one warm-up) and
/// return FLOP/s (2·m·k·n per product).
pub fn measure_matmul(
    device: &Device,
    (m, k, n): (usize, usize, usize),
    min_time: Duration,
) -> Result<MatmulRate, EngineError> {
    let a = Tensor::randn(0f32, 1f32, (m, k), device)?;
    let b = Tensor::randn(0f32, 1f32, (k, n), device)?;
    // Warm-up: thread pools, allocator, CUDA kernels.
    a.matmul(&b)?;
    device.synchronize()?;
    let started = Instant::now();
    let mut repeats = 0usize;
    while repeats == 0 || started.elapsed() < min_time {
        let c = a.matmul(&b)?;
        // Force the result so lazy backends cannot skip the work.
        device.synchronize()?;
        drop(c);
        repeats += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    let flops = 2.0 * (m * k * n) as f64 * repeats as f64;
    Ok(MatmulRate {
        library: "candle".into(),
        m,
        k,
        n,
        dtype: format!("{:?}", DType::F32).to_lowercase(),
        repeats,
        flops_per_s: flops / secs,
    })
}

/// Our CPU block kernel on the same shape: f32 rows × a Q4_1 matrix (the precision the
/// benchmark's model is held in). None where the kernel does not run (neither AVX-512F
/// nor AVX2 with FMA, a GPU).
pub fn measure_block_kernel(
    device: &Device,
    (m, k, n): (usize, usize, usize),
    min_time: Duration,
) -> Option<MatmulRate> {
    if !device.is_cpu() {
        return None;
    }
    let (repeats, flops_per_s) = crate::engine::lm::block_kernel_rate((m, k, n), min_time)?;
    Some(MatmulRate {
        library: "blocks".into(),
        m,
        k,
        n,
        dtype: "f32×q4_1".into(),
        repeats,
        flops_per_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::lm::Arch;

    fn tiny() -> Config {
        Config {
            arch: Arch::Llama,
            n_layers: 2,
            hidden: 8,
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 2,
            ffn: 16,
            vocab_size: 10,
            max_context: 64,
            rope_theta: 10_000.0,
            rms_eps: 1e-5,
            rope_interleaved: false,
        }
    }

    #[test]
    fn flops_per_token_matches_a_hand_count() {
        let cfg = tiny();
        // Per layer: q 8×8=64, k 8×4=32, v 32, o 64, gate/up/down 8×16=128 each → 576.
        // Two layers 1152, LM head 8×10 = 80 → 1232 weights.
        assert_eq!(matmul_params(&cfg), 1232);
        // Attention at context 5: 2 layers × 4 heads × (2 products × 2 FLOPs × head_dim 2) × 5 = 320.
        assert_eq!(decode_flops_per_token(&cfg, 5), 2.0 * 1232.0 + 320.0);
        assert_eq!(decode_flops_per_token(&cfg, 0), 2464.0);
    }

    #[test]
    fn smollm2_135m_has_about_134m_matmul_weights() {
        let cfg = Config {
            n_layers: 30,
            hidden: 576,
            n_heads: 9,
            n_kv_heads: 3,
            head_dim: 64,
            ffn: 1536,
            vocab_size: 49_152,
            max_context: 8192,
            ..tiny()
        };
        // 30 × 3 538 944 + 576 × 49 152 (the tied head counts: it is a product per token).
        assert_eq!(matmul_params(&cfg), 30 * 3_538_944 + 28_311_552);
        // K and V: 2 × 30 layers × 3 heads × 64 = 11 520 floats per token.
        assert_eq!(kv_elements_per_token(&cfg), 11_520);
    }

    #[test]
    fn kv_per_token_matches_what_a_batch_holds() {
        use crate::engine::lm::testing::{write_tiny_gguf, TinySpec};
        use crate::engine::lm::Lm;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        write_tiny_gguf(&path, &TinySpec::new(Arch::Llama, 3)).unwrap();
        let lm = Lm::load(&path, &Device::Cpu).unwrap();
        let prefix = lm.prefill(&[1, 2, 3, 4, 5]).unwrap();
        let mut batch = lm.batch(&prefix, 3).unwrap();
        for _ in 0..4 {
            lm.step(&mut batch, &[6, 7, 8]).unwrap();
        }
        // The rows' own KV only: 3 rows × the positions their buffers hold (≥ the 4 fed); the
        // 5-token prefix is shared, not counted.
        let per_token = kv_elements_per_token(lm.config()) as usize;
        let held = batch.own_kv_capacity();
        assert!(held >= 4, "{held}");
        assert_eq!(batch.own_kv_elements(), 3 * held * per_token);
    }

    #[test]
    fn mean_context_counts_the_fed_tokens() {
        // Tokens 0..4 attend to 11, 12, 13, 14 positions after a 10-token prefix.
        assert_eq!(mean_decode_context(10, 4), 12.5);
        assert_eq!(mean_decode_context(10, 0), 10.0);
    }

    #[test]
    fn the_block_kernel_rate_is_measured_where_it_runs() {
        let r = measure_block_kernel(&Device::Cpu, (4, 64, 16), Duration::from_millis(5));
        match r {
            Some(r) => {
                assert_eq!((r.m, r.k, r.n, r.library.as_str()), (4, 64, 16, "blocks"));
                assert!(r.repeats >= 1 && r.flops_per_s > 0.0 && r.flops_per_s.is_finite());
            }
            None => {
                let avx2_fma =
                    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
                assert!(!(std::is_x86_feature_detected!("avx512f") || avx2_fma));
            }
        }
        // Widths that are not whole blocks are refused, not measured wrongly.
        assert!(
            measure_block_kernel(&Device::Cpu, (4, 40, 16), Duration::from_millis(1)).is_none()
        );
    }

    #[test]
    fn matmul_rate_is_positive_and_counts_repeats() {
        let r = measure_matmul(&Device::Cpu, (4, 8, 16), Duration::from_millis(5)).unwrap();
        assert_eq!((r.m, r.k, r.n), (4, 8, 16));
        assert!(r.repeats >= 1);
        assert!(r.flops_per_s > 0.0 && r.flops_per_s.is_finite());
        assert_eq!(r.dtype, "f32");
    }
}
