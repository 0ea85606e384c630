//! Speed of the real default model on this machine (ignored by default):
//! `cargo test --test lm_speed -- --ignored --nocapture`.

use std::time::Instant;

use anchorscope::engine::lm::{Batch, Lm, LoadOptions};

use crate::real::model as model_path;

/// Greedy decoding of `steps` steps for every row of `batch`; seconds taken.
fn timed_greedy_steps(lm: &Lm, batch: &mut Batch, steps: usize) -> f64 {
    let mut toks: Vec<u32> = (0..batch.rows() as u32).map(|r| 500 + r).collect();
    let t = Instant::now();
    for _ in 0..steps {
        let logits = lm.step(batch, &toks).unwrap();
        toks = logits.argmax(1).unwrap().to_vec1::<u32>().unwrap();
    }
    t.elapsed().as_secs_f64()
}

#[test]
#[ignore = "measures the real model; run with --ignored --nocapture"]
fn smollm2_prefill_and_batched_decode_speed() {
    let Some(path) = model_path() else {
        return;
    };
    let device = anchorscope::engine::device::select(
        &std::env::var("ANCHORSCOPE_DEVICE").unwrap_or_else(|_| "cpu".into()),
    )
    .unwrap();
    // ANCHORSCOPE_DENSE_LIMIT=0 keeps the quantized kernels (to compare with the f32 default).
    let mut opts = LoadOptions::from_env();
    if let Some(v) = std::env::var("ANCHORSCOPE_DENSE_LIMIT")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        opts.dense_cpu_limit = v;
    }
    let t = Instant::now();
    let lm = Lm::load_with(&path, &device, &opts).unwrap();
    println!(
        "load: {:.2} s (dense_cpu_limit {} bytes)",
        t.elapsed().as_secs_f64(),
        opts.dense_cpu_limit
    );
    let seq: Vec<u32> = (0..300u32).map(|i| 100 + (i * 131) % 40000).collect();
    let _ = lm.prefill(&seq[..8]).unwrap(); // warm-up
    let t = Instant::now();
    let prefix = lm.prefill(&seq).unwrap();
    let dt = t.elapsed().as_secs_f64();
    println!(
        "prefill {} tokens: {:.3} s ({:.0} tokens/s) on {:?}",
        prefix.len(),
        dt,
        prefix.len() as f64 / dt,
        device
    );
    assert_eq!(prefix.len(), 300);
    let steps = 64;
    // ANCHORSCOPE_BENCH_ROWS=16,64 picks the batch sizes.
    let sizes: Vec<usize> = std::env::var("ANCHORSCOPE_BENCH_ROWS")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 4, 16]);
    for rows in sizes {
        let mut batch = lm.batch(&prefix, rows).unwrap();
        let dt = timed_greedy_steps(&lm, &mut batch, steps);
        println!(
            "decode rows={rows:2} x {steps} steps after a {}-token prefix: {:.2} s, {:.1} tokens/s ({:.1} ms/step)",
            prefix.len(),
            dt,
            (rows * steps) as f64 / dt,
            dt * 1000.0 / steps as f64
        );
        assert_eq!(batch.new_tokens(), steps);
    }
}

#[test]
#[ignore = "measures the real model; run with --ignored --nocapture"]
fn smollm2_sweep_of_eight_positions_in_one_batch() {
    let Some(path) = model_path() else {
        return;
    };
    let lm = Lm::load_with(&path, &candle_core::Device::Cpu, &LoadOptions::from_env()).unwrap();
    let seq: Vec<u32> = (0..600u32).map(|i| 100 + (i * 131) % 40000).collect();
    let full = lm.prefill(&seq).unwrap();
    let cuts: Vec<usize> = (0..8).map(|k| 200 + 50 * k).collect();
    let prefixes: Vec<_> = cuts.iter().map(|&c| full.truncate(c)).collect();
    let per = 16;
    let groups: Vec<_> = prefixes.iter().map(|p| (p, per)).collect();
    let mut batch = lm.batch_of(&groups).unwrap();
    let rows = per * cuts.len();
    let steps = 64;
    let dt = timed_greedy_steps(&lm, &mut batch, steps);
    println!(
        "sweep decode: 8 positions x {per} rows x {steps} steps in one batch: {:.2} s, {:.1} tokens/s ({:.1} ms/step)",
        dt,
        (rows * steps) as f64 / dt,
        dt * 1000.0 / steps as f64
    );
}
