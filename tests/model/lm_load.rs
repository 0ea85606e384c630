//! What the loaders read from a model: ModelInfo (name, arch, vocab, context, bos/eos) and the
//! hyper-parameters, from GGUF metadata and from Hugging Face config files.

use anchorscope::engine::lm::testing::{write_tiny_gguf, write_tiny_hf, TinySpec};
use anchorscope::engine::lm::{Arch, Lm};
use candle_core::quantized::gguf_file::Value;
use candle_core::Device;

#[test]
fn gguf_metadata_gives_info_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    let mut spec = TinySpec::new(Arch::Qwen3, 1);
    spec.context = 64;
    write_tiny_gguf(&path, &spec).unwrap();
    let lm = Lm::load(&path, &Device::Cpu).unwrap();
    let info = lm.info();
    assert_eq!(info.name, "tiny-qwen3");
    assert_eq!(info.arch, "qwen3");
    assert_eq!(info.vocab_size, 96);
    assert_eq!(info.max_context, 64);
    assert_eq!(info.bos_token_id, Some(1));
    assert_eq!(info.eos_token_ids, vec![2]);
    let c = lm.config();
    assert_eq!(
        (
            c.n_layers,
            c.hidden,
            c.n_heads,
            c.n_kv_heads,
            c.head_dim,
            c.ffn
        ),
        (2, 64, 4, 2, 16, 128)
    );
    assert!(!c.rope_interleaved, "Qwen GGUFs use the half-split rope");
}

#[test]
fn chatml_end_tokens_count_as_end_of_output() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chatml.gguf");
    let mut spec = TinySpec::new(Arch::Llama, 2);
    let tokens: Vec<Value> = (0..96)
        .map(|i| {
            Value::String(match i {
                5 => "<|im_end|>".into(),
                7 => "<|endoftext|>".into(),
                _ => format!("t{i}"),
            })
        })
        .collect();
    spec.extra_metadata = vec![("tokenizer.ggml.tokens".into(), Value::Array(tokens))];
    write_tiny_gguf(&path, &spec).unwrap();
    let lm = Lm::load(&path, &Device::Cpu).unwrap();
    // The declared eos first, then the ChatML ends (Qwen2.5 may end with either).
    assert_eq!(lm.info().eos_token_ids, vec![2, 5, 7]);
    assert!(
        lm.config().rope_interleaved,
        "llama.cpp Llama GGUFs use the interleaved rope"
    );
}

#[test]
fn hugging_face_directory_reads_config_generation_config_and_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let hf = dir.path().join("TinyQwen2");
    write_tiny_hf(&hf, &TinySpec::new(Arch::Qwen2, 3)).unwrap();
    std::fs::write(
        hf.join("generation_config.json"),
        r#"{"eos_token_id": [2, 7]}"#,
    )
    .unwrap();
    std::fs::write(
        hf.join("tokenizer.json"),
        r#"{"added_tokens": [{"id": 9, "content": "<|im_end|>"}]}"#,
    )
    .unwrap();
    let lm = Lm::load(&hf, &Device::Cpu).unwrap();
    let info = lm.info();
    assert_eq!(info.name, "TinyQwen2");
    assert_eq!(info.arch, "qwen2");
    assert_eq!(info.max_context, 128);
    assert_eq!(info.bos_token_id, Some(1));
    assert_eq!(info.eos_token_ids, vec![2, 7, 9]);
    assert!(!lm.config().rope_interleaved);
}

#[test]
fn bf16_and_f16_safetensors_load_and_compute_in_f32() {
    let dir = tempfile::tempdir().unwrap();
    let f32_dir = dir.path().join("f32");
    let spec = TinySpec::new(Arch::Llama, 4);
    write_tiny_hf(&f32_dir, &spec).unwrap();
    let reference = Lm::load(&f32_dir, &Device::Cpu).unwrap();
    let seq = [3u32, 14, 15, 9, 26];
    let empty = reference.prefill(&[1]).unwrap().truncate(0);
    let (_, want) = reference.extend(&empty, &seq).unwrap();
    let want = want.to_vec1::<f32>().unwrap();
    for dtype in [candle_core::DType::BF16, candle_core::DType::F16] {
        let d = dir.path().join(format!("{dtype:?}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(f32_dir.join("config.json"), d.join("config.json")).unwrap();
        let map = candle_core::safetensors::load(f32_dir.join("model.safetensors"), &Device::Cpu)
            .unwrap();
        let half: std::collections::HashMap<String, candle_core::Tensor> = map
            .into_iter()
            .map(|(k, v)| (k, v.to_dtype(dtype).unwrap()))
            .collect();
        candle_core::safetensors::save(&half, d.join("model.safetensors")).unwrap();
        let lm = Lm::load(&d, &Device::Cpu).unwrap();
        let (_, got) = lm.extend(&empty, &seq).unwrap();
        assert_eq!(got.dtype(), candle_core::DType::F32);
        let got = got.to_vec1::<f32>().unwrap();
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 0.25, "{dtype:?}: logits differ by {worst}");
        assert!(
            worst > 0.0,
            "{dtype:?}: rounding should show (weights really were converted)"
        );
    }
}
