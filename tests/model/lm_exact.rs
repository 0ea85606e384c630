//! The prefix cache and the batched decoder are exact: on tiny models with random weights
//! (written as real GGUF / safetensors files and loaded through `Lm::load`), cached and batched
//! decoding give the same logits and greedy tokens as decoding from scratch.

use std::path::Path;

use anchorscope::engine::lm::testing::{write_tiny_gguf, write_tiny_hf, TinySpec};
use anchorscope::engine::lm::{Arch, Batch, Lm, LoadOptions};
use candle_core::{Device, Tensor};

fn load_gguf(dir: &Path, spec: &TinySpec) -> Lm {
    let path = dir.join(format!("tiny-{}-{}.gguf", spec.arch.name(), spec.seed));
    write_tiny_gguf(&path, spec).unwrap();
    // Quantized specs keep candle's quantized kernels (neither expanded to f32 nor read by
    // our block kernel) to test that path.
    let opts = LoadOptions {
        dense_cpu_limit: if spec.quantized { 0 } else { usize::MAX },
        block_kernel: !spec.quantized,
        ..LoadOptions::default()
    };
    Lm::load_with(&path, &Device::Cpu, &opts).unwrap()
}

#[test]
fn the_block_kernel_gives_the_logits_of_the_dequantized_model() {
    // The same Q8_0 file three ways: our block kernel (the default on AVX-512 CPUs), expanded
    // to f32 for candle's gemm, and candle's quantized kernels. The first two do the same f32
    // arithmetic on the same weights; candle's quantized path also rounds the activations.
    let dir = tempfile::tempdir().unwrap();
    for arch in [Arch::Llama, Arch::Qwen2, Arch::Qwen3] {
        let mut spec = TinySpec::new(arch, 21);
        spec.quantized = true;
        // Tied: an untied Q8_0 head stays on candle's quantized kernel in the f32 load.
        spec.tied = true;
        let path = dir.path().join(format!("tiny-block-{}.gguf", arch.name()));
        write_tiny_gguf(&path, &spec).unwrap();
        let load = |block_kernel: bool, dense_cpu_limit: usize| {
            let opts = LoadOptions {
                block_kernel,
                dense_cpu_limit,
                ..LoadOptions::default()
            };
            Lm::load_with(&path, &Device::Cpu, &opts).unwrap()
        };
        let blocks = load(true, usize::MAX);
        let dense = load(false, usize::MAX);
        let seq = tokens(spec.vocab, 20);
        let a = vec1(
            &blocks
                .extend(&blocks.prefill(&seq[..12]).unwrap(), &seq[12..])
                .unwrap()
                .1,
        );
        let b = vec1(
            &dense
                .extend(&dense.prefill(&seq[..12]).unwrap(), &seq[12..])
                .unwrap()
                .1,
        );
        assert_close(&a, &b, 1e-4, &format!("{arch:?} extend"));
        // Batched decoding through the kernel too.
        let pa = blocks.prefill(&seq).unwrap();
        let pb = dense.prefill(&seq).unwrap();
        let mut ba = blocks.batch(&pa, 3).unwrap();
        let mut bb = dense.batch(&pb, 3).unwrap();
        let la = blocks
            .step(&mut ba, &[1, 2, 3])
            .unwrap()
            .flatten_all()
            .unwrap();
        let lb = dense
            .step(&mut bb, &[1, 2, 3])
            .unwrap()
            .flatten_all()
            .unwrap();
        assert_close(&vec1(&la), &vec1(&lb), 1e-4, &format!("{arch:?} step"));
    }
}

fn vec1(t: &Tensor) -> Vec<f32> {
    t.to_vec1::<f32>().unwrap()
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0f32, f32::max);
    assert!(
        worst <= tol,
        "{what}: max relative difference {worst} > {tol}"
    );
}

/// A fixed token sequence with some repetition (so attention has something to find).
fn tokens(vocab: usize, n: usize) -> Vec<u32> {
    (0..n)
        .map(|i| ((i * 37 + (i / 5) * 11 + 3) % vocab) as u32)
        .collect()
}

/// Reference: greedy decoding with no cache at all (a full forward pass per new token).
fn greedy_from_scratch(lm: &Lm, start: &[u32], n: usize) -> Vec<u32> {
    let mut seq = start.to_vec();
    let mut out = Vec::new();
    for _ in 0..n {
        let (_, logits) = lm.extend(&empty(lm), &seq).unwrap();
        let t = argmax(&vec1(&logits));
        out.push(t);
        seq.push(t);
    }
    out
}

fn empty(lm: &Lm) -> anchorscope::engine::lm::Prefix {
    lm.prefill(&[1]).unwrap().truncate(0)
}

fn specs() -> Vec<TinySpec> {
    let mut v = Vec::new();
    for (arch, seed) in [(Arch::Llama, 7), (Arch::Qwen2, 11), (Arch::Qwen3, 13)] {
        v.push(TinySpec::new(arch, seed));
    }
    let mut q = TinySpec::new(Arch::Llama, 17);
    q.quantized = true;
    q.tied = true;
    v.push(q);
    v
}

#[test]
fn greedy_tokens_from_the_cached_prefix_equal_tokens_from_scratch() {
    let dir = tempfile::tempdir().unwrap();
    for spec in specs() {
        let lm = load_gguf(dir.path(), &spec);
        let seq = tokens(spec.vocab, 24);
        // One pass over the whole sequence serves every position.
        let full = lm.prefill(&seq).unwrap();
        assert_eq!(full.len(), 24);
        for p in [1usize, 5, 12, 23] {
            let expected = greedy_from_scratch(&lm, &seq[..p], 6);
            // Cached: the prefix of p-1 tokens, then the p-th token through the batch decoder.
            let mut batch = lm.batch(&full.truncate(p - 1), 1).unwrap();
            let mut next = seq[p - 1];
            let mut got = Vec::new();
            for _ in 0..6 {
                let logits = lm.step(&mut batch, &[next]).unwrap();
                next = argmax(&vec1(&logits.squeeze(0).unwrap()));
                got.push(next);
            }
            assert_eq!(got, expected, "{:?} position {p}", spec.arch);
            // And through extend on the truncated prefix.
            let (_, logits) = lm.extend(&full.truncate(p - 1), &seq[p - 1..p]).unwrap();
            assert_eq!(
                argmax(&vec1(&logits)),
                expected[0],
                "{:?} extend at {p}",
                spec.arch
            );
        }
        // The greedy continuation is not trivially constant (the test could fail).
        let g = greedy_from_scratch(&lm, &seq[..5], 6);
        assert!(
            g.iter().any(|t| *t != g[0]),
            "{:?}: degenerate continuation {g:?}",
            spec.arch
        );
    }
}

#[test]
fn rows_decode_past_their_first_kv_buffers_and_keep_them_through_retain() {
    // The rows' own KV lives in buffers of 32 positions that double when full (33rd and 65th
    // token): logits stay those of running the whole sequence through `extend`, before and
    // after each move, and after a row leaves the batch between the two.
    // Head size 16 takes the row-by-row CPU attention, 64 the query-tiled one.
    let dir = tempfile::tempdir().unwrap();
    for head_dim in [16, 64] {
        let mut spec = TinySpec::new(Arch::Qwen2, 21);
        spec.head_dim = head_dim;
        decode_past_the_first_buffers(&load_gguf(dir.path(), &spec), spec.vocab);
    }
}

fn decode_past_the_first_buffers(lm: &Lm, vocab: usize) {
    let seq = tokens(vocab, 10);
    let prefix = lm.prefill(&seq).unwrap();
    let feeds: Vec<Vec<u32>> = (0..3u32)
        .map(|r| {
            (0..70u32)
                .map(|i| (i * 13 + r * 29 + 3) % vocab as u32)
                .collect()
        })
        .collect();
    let mut batch = lm.batch(&prefix, 3).unwrap();
    let mut live = vec![0usize, 1, 2];
    for i in 0..70 {
        if i == 50 {
            batch.retain(&[true, false, true]).unwrap();
            live = vec![0, 2];
        }
        let toks: Vec<u32> = live.iter().map(|&r| feeds[r][i]).collect();
        let logits = lm.step(&mut batch, &toks).unwrap();
        if [0, 31, 32, 33, 49, 50, 63, 64, 65, 69].contains(&i) {
            for (j, &r) in live.iter().enumerate() {
                let (_, want) = lm.extend(&prefix, &feeds[r][..=i]).unwrap();
                assert_close(
                    &vec1(&logits.get(j).unwrap()),
                    &vec1(&want),
                    1e-4,
                    &format!("row {r} token {i}"),
                );
            }
        }
    }
    assert_eq!(batch.new_tokens(), 70);
    assert_eq!(batch.own_kv_capacity(), 128, "32 → 64 → 128 positions");
    // What a memory budget counts per row is what the buffers reached.
    assert_eq!(Batch::own_kv_capacity_for(70), 128);
    assert_eq!(Batch::own_kv_capacity_for(64), 64);
    assert_eq!(Batch::own_kv_capacity_for(1), 32);
}

#[test]
fn extend_in_one_call_equals_token_by_token() {
    let dir = tempfile::tempdir().unwrap();
    for spec in specs() {
        let lm = load_gguf(dir.path(), &spec);
        let seq = tokens(spec.vocab, 10);
        let base = lm.prefill(&seq[..3]).unwrap();
        let (all, logits_all) = lm.extend(&base, &seq[3..]).unwrap();
        let mut p = base.clone();
        let mut last = None;
        for t in &seq[3..] {
            let (np, l) = lm.extend(&p, &[*t]).unwrap();
            p = np;
            last = Some(l);
        }
        assert_eq!(all.len(), p.len());
        assert_close(
            &vec1(&logits_all),
            &vec1(&last.unwrap()),
            1e-4,
            "one call vs steps",
        );
        // The old prefix stays valid after being extended.
        assert_eq!(base.len(), 3);
        let (_, again) = lm.extend(&base, &seq[3..]).unwrap();
        assert_close(&vec1(&logits_all), &vec1(&again), 1e-6, "base reused");
    }
}

#[test]
fn chunked_prefill_equals_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    let spec = TinySpec::new(Arch::Qwen2, 41);
    let path = dir.path().join("chunks.gguf");
    write_tiny_gguf(&path, &spec).unwrap();
    let one = Lm::load(&path, &Device::Cpu).unwrap();
    let opts = LoadOptions {
        prefill_chunk: 5,
        ..LoadOptions::default()
    };
    let chunked = Lm::load_with(&path, &Device::Cpu, &opts).unwrap();
    let seq = tokens(spec.vocab, 23);
    let (pa, a) = one.extend(&empty(&one), &seq).unwrap();
    let (pb, b) = chunked.extend(&empty(&chunked), &seq).unwrap();
    assert_eq!(pa.len(), pb.len());
    assert_close(&vec1(&a), &vec1(&b), 1e-4, "chunked prefill");
    // The chunked cache serves decoding like the one-pass cache.
    let mut ba = one.batch(&pa.truncate(17), 1).unwrap();
    let mut bb = chunked.batch(&pb.truncate(17), 1).unwrap();
    let la = one.step(&mut ba, &[seq[17]]).unwrap().squeeze(0).unwrap();
    let lb = chunked
        .step(&mut bb, &[seq[17]])
        .unwrap()
        .squeeze(0)
        .unwrap();
    assert_close(&vec1(&la), &vec1(&lb), 1e-4, "decode after chunked prefill");
}

#[test]
fn batch_from_an_empty_prefix_matches_extend() {
    let dir = tempfile::tempdir().unwrap();
    let spec = TinySpec::new(Arch::Llama, 43);
    let lm = load_gguf(dir.path(), &spec);
    let mut b = lm.batch(&empty(&lm), 2).unwrap();
    let l1 = lm.step(&mut b, &[4, 9]).unwrap();
    let l2 = lm.step(&mut b, &[6, 6]).unwrap();
    for (r, first) in [4u32, 9].into_iter().enumerate() {
        let (_, e1) = lm.extend(&empty(&lm), &[first]).unwrap();
        let (_, e2) = lm.extend(&empty(&lm), &[first, 6]).unwrap();
        assert_close(&vec1(&l1.get(r).unwrap()), &vec1(&e1), 1e-4, "first step");
        assert_close(&vec1(&l2.get(r).unwrap()), &vec1(&e2), 1e-4, "second step");
    }
}

#[test]
fn models_and_caches_can_move_to_a_worker_thread() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Lm>();
    send_sync::<anchorscope::engine::lm::Prefix>();
    send_sync::<anchorscope::engine::lm::Batch>();
}

#[test]
fn batched_rows_match_single_row_decoding_and_retain_keeps_the_right_rows() {
    let dir = tempfile::tempdir().unwrap();
    for spec in specs() {
        let lm = load_gguf(dir.path(), &spec);
        let seq = tokens(spec.vocab, 16);
        let prefix = lm.prefill(&seq).unwrap().truncate(9);
        // Three rows feeding different tokens.
        let feeds: Vec<Vec<u32>> = (0..3)
            .map(|r| {
                (0..5)
                    .map(|i| ((r * 29 + i * 7 + 1) % spec.vocab) as u32)
                    .collect()
            })
            .collect();
        // Reference per row: the sequence path (extend), not the batch decoder.
        let single: Vec<Vec<Vec<f32>>> = feeds
            .iter()
            .map(|f| {
                (0..f.len())
                    .map(|i| vec1(&lm.extend(&prefix, &f[..=i]).unwrap().1))
                    .collect()
            })
            .collect();
        let mut batch = lm.batch(&prefix, 3).unwrap();
        let mut live = vec![0usize, 1, 2];
        for i in 0..5 {
            if i == 3 {
                // Row 1 finishes: the others carry on with their own KV.
                batch.retain(&[true, false, true]).unwrap();
                live = vec![0, 2];
            }
            let toks: Vec<u32> = live.iter().map(|&r| feeds[r][i]).collect();
            let logits = lm.step(&mut batch, &toks).unwrap();
            assert_eq!(logits.dims(), &[live.len(), spec.vocab]);
            for (j, &r) in live.iter().enumerate() {
                let row = vec1(&logits.get(j).unwrap());
                assert_close(
                    &row,
                    &single[r][i],
                    1e-4,
                    &format!("{:?} row {r} step {i}", spec.arch),
                );
            }
        }
        assert_eq!(batch.rows(), 2);
        assert_eq!(batch.context_len(), 14);
        // Memory: rows × own positions held × layers × (K+V) × kv heads × head_dim; no prefix
        // copies. The positions held are the 5 fed, rounded up to the buffer's first capacity
        // (32) or at most doubled.
        let per_token = spec.layers * 2 * spec.kv_heads * spec.head_dim;
        let held = batch.own_kv_capacity();
        assert!((5..=32).contains(&held), "{held} positions held for 5");
        assert_eq!(batch.own_kv_elements(), 2 * held * per_token);
        assert_eq!(batch.prefix().len(), 9);
    }
}

#[test]
fn gguf_and_safetensors_of_the_same_weights_agree() {
    // Llama GGUF stores q/k permuted for the interleaved rope, safetensors does not: equal
    // logits prove both conventions are handled.
    let dir = tempfile::tempdir().unwrap();
    for arch in [Arch::Llama, Arch::Qwen2, Arch::Qwen3] {
        let spec = TinySpec::new(arch, 23);
        let gguf = load_gguf(dir.path(), &spec);
        let hf_dir = dir.path().join(format!("hf-{}", arch.name()));
        write_tiny_hf(&hf_dir, &spec).unwrap();
        let hf = Lm::load(&hf_dir, &Device::Cpu).unwrap();
        assert_eq!(hf.info().arch, arch.name());
        assert_eq!(hf.info().eos_token_ids, vec![2]);
        let seq = tokens(spec.vocab, 12);
        let (_, a) = gguf.extend(&empty(&gguf), &seq).unwrap();
        let (_, b) = hf.extend(&empty(&hf), &seq).unwrap();
        assert_close(&vec1(&a), &vec1(&b), 1e-4, arch.name());
    }
}

#[test]
fn logits_match_candle_transformers_quantized_models() {
    use candle_core::quantized::gguf_file::{Content, Value};
    let dir = tempfile::tempdir().unwrap();
    for (arch, quantized) in [
        (Arch::Llama, false),
        (Arch::Llama, true),
        (Arch::Qwen2, true),
        (Arch::Qwen3, true),
    ] {
        let mut spec = TinySpec::new(arch, 31);
        spec.quantized = quantized;
        // candle's quantized_qwen3 computes rope in f16 unless told the model is f32.
        spec.extra_metadata = vec![("general.dtype".into(), Value::U32(0))];
        let lm = load_gguf(dir.path(), &spec);
        let path = dir.path().join(format!("tiny-{}-31.gguf", arch.name()));
        let mut f = std::fs::File::open(&path).unwrap();
        let ct = Content::read(&mut f).unwrap();
        let seq = tokens(spec.vocab, 11);
        let input = Tensor::new(seq.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let reference = match arch {
            Arch::Llama => {
                use candle_transformers::models::quantized_llama::ModelWeights;
                let mut m = ModelWeights::from_gguf(ct, &mut f, &Device::Cpu).unwrap();
                m.forward(&input, 0).unwrap()
            }
            Arch::Qwen2 => {
                use candle_transformers::models::quantized_qwen2::ModelWeights;
                let mut m = ModelWeights::from_gguf(ct, &mut f, &Device::Cpu).unwrap();
                m.forward(&input, 0).unwrap()
            }
            Arch::Qwen3 => {
                use candle_transformers::models::quantized_qwen3::ModelWeights;
                let mut m = ModelWeights::from_gguf(ct, &mut f, &Device::Cpu).unwrap();
                m.forward(&input, 0).unwrap()
            }
        };
        let (_, ours) = lm.extend(&empty(&lm), &seq).unwrap();
        let reference = reference.flatten_all().unwrap();
        assert_close(
            &vec1(&ours),
            &vec1(&reference),
            1e-3,
            &format!("{arch:?} q={quantized}"),
        );
    }
}

#[test]
fn the_fused_cpu_attention_equals_the_tensor_op_attention() {
    // Rows of three prefixes of different lengths (one empty) in one batch, several steps, all
    // three architectures (grouped-query heads, biases, q/k norms). Head sizes 32, 64 and 128
    // take the query-tiled path on AVX-512 CPUs (the last group's 22 queries per KV head fill
    // one tile and part of another), 16 the row-by-row one.
    let dir = tempfile::tempdir().unwrap();
    for (arch, head_dim) in [
        (Arch::Llama, 16),
        (Arch::Qwen2, 16),
        (Arch::Qwen3, 16),
        (Arch::Llama, 32),
        (Arch::Qwen2, 64),
        (Arch::Qwen3, 128),
    ] {
        let mut spec = TinySpec::new(arch, 33);
        spec.head_dim = head_dim;
        let path = dir
            .path()
            .join(format!("tiny-attn-{}-{head_dim}.gguf", arch.name()));
        write_tiny_gguf(&path, &spec).unwrap();
        let load = |fused_attention: bool| {
            let opts = LoadOptions {
                fused_attention,
                ..LoadOptions::default()
            };
            Lm::load_with(&path, &Device::Cpu, &opts).unwrap()
        };
        let (fused, ops) = (load(true), load(false));
        // Prefill (causal attention over the chunk) in two chunks, 20 then 4 tokens: its
        // logits and, through the next layers' keys, the steps below.
        let seq = tokens(spec.vocab, 24);
        let (pf, lf) = fused
            .extend(&fused.prefill(&seq[..20]).unwrap(), &seq[20..])
            .unwrap();
        let (po, lo) = ops
            .extend(&ops.prefill(&seq[..20]).unwrap(), &seq[20..])
            .unwrap();
        assert_close(
            &vec1(&lf),
            &vec1(&lo),
            1e-4,
            &format!("{arch:?} hd {head_dim} prefill"),
        );
        let groups = |p: &anchorscope::engine::lm::Prefix| {
            vec![(p.truncate(0), 1), (p.truncate(9), 2), (p.truncate(24), 11)]
        };
        let (gf, go) = (groups(&pf), groups(&po));
        let rf: Vec<_> = gf.iter().map(|(p, n)| (p, *n)).collect();
        let ro: Vec<_> = go.iter().map(|(p, n)| (p, *n)).collect();
        let mut bf = fused.batch_of(&rf).unwrap();
        let mut bo = ops.batch_of(&ro).unwrap();
        let mut next: Vec<u32> = (0..14).map(|i| (i * 7 + 1) as u32 % 96).collect();
        for step in 0..4 {
            let lf = fused.step(&mut bf, &next).unwrap();
            let lo = ops.step(&mut bo, &next).unwrap();
            let (vf, vo) = (
                vec1(&lf.flatten_all().unwrap()),
                vec1(&lo.flatten_all().unwrap()),
            );
            assert_close(
                &vf,
                &vo,
                1e-4,
                &format!("{arch:?} hd {head_dim} step {step}"),
            );
            next = lo.argmax(1).unwrap().to_vec1::<u32>().unwrap();
        }
    }
}
