//! Bad models and bad calls are clear errors naming the file / tensor / setting, never panics.

use std::path::Path;

use anchorscope::engine::lm::testing::{write_tiny_gguf, write_tiny_hf, TinySpec};
use anchorscope::engine::lm::{Arch, Lm};
use anchorscope::engine::EngineError;
use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::QTensor;
use candle_core::Device;

fn load(path: &Path) -> Result<Lm, EngineError> {
    Lm::load(path, &Device::Cpu)
}

/// Rewrite a GGUF file, dropping one tensor and overriding metadata.
fn rewrite(src: &Path, dst: &Path, drop: &str, md_override: &[(&str, Value)]) {
    let mut f = std::fs::File::open(src).unwrap();
    let ct = Content::read(&mut f).unwrap();
    let mut md: Vec<(String, Value)> = ct
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in md_override {
        md.retain(|(key, _)| key != k);
        md.push((k.to_string(), v.clone()));
    }
    let mut names: Vec<&String> = ct
        .tensor_infos
        .keys()
        .filter(|n| n.as_str() != drop)
        .collect();
    names.sort();
    let tensors: Vec<(String, QTensor)> = names
        .iter()
        .map(|n| ((*n).clone(), ct.tensor(&mut f, n, &Device::Cpu).unwrap()))
        .collect();
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = std::fs::File::create(dst).unwrap();
    gguf_file::write(&mut out, &md_refs, &t_refs).unwrap();
}

fn tiny(dir: &Path, arch: Arch) -> std::path::PathBuf {
    let path = dir.join(format!("tiny-{}.gguf", arch.name()));
    write_tiny_gguf(&path, &TinySpec::new(arch, 5)).unwrap();
    path
}

#[test]
fn unsupported_architecture_lists_the_supported_ones() {
    let dir = tempfile::tempdir().unwrap();
    let good = tiny(dir.path(), Arch::Llama);
    let bad = dir.path().join("gpt2.gguf");
    rewrite(
        &good,
        &bad,
        "",
        &[("general.architecture", Value::String("gpt2".into()))],
    );
    let e = load(&bad).err().expect("gpt2 must be refused");
    assert!(
        matches!(e, EngineError::UnsupportedArch { ref arch, .. } if arch == "gpt2"),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("gpt2.gguf")
            && msg.contains("llama")
            && msg.contains("qwen2")
            && msg.contains("qwen3"),
        "{msg}"
    );

    let hf = dir.path().join("neox");
    write_tiny_hf(&hf, &TinySpec::new(Arch::Llama, 5)).unwrap();
    let cfg = std::fs::read_to_string(hf.join("config.json")).unwrap();
    std::fs::write(
        hf.join("config.json"),
        cfg.replace("\"llama\"", "\"gpt_neox\""),
    )
    .unwrap();
    let msg = load(&hf)
        .err()
        .expect("gpt_neox must be refused")
        .to_string();
    assert!(
        msg.contains("gpt_neox") && msg.contains("config.json") && msg.contains("qwen3"),
        "{msg}"
    );
}

#[test]
fn truncated_gguf_names_the_file_and_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let good = tiny(dir.path(), Arch::Qwen2);
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() * 3 / 4]).unwrap();
    let e = load(&cut).err().expect("a truncated file must be refused");
    let msg = e.to_string();
    assert!(matches!(e, EngineError::Model { .. }), "{msg}");
    assert!(
        msg.contains("cut.gguf") && msg.contains("tensor `") && msg.contains("truncated"),
        "{msg}"
    );
    // Cut inside the header too.
    std::fs::write(&cut, &bytes[..40]).unwrap();
    let msg = load(&cut)
        .err()
        .expect("a cut header must be refused")
        .to_string();
    assert!(msg.contains("cut.gguf"), "{msg}");
}

#[test]
fn missing_tensor_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let good = tiny(dir.path(), Arch::Llama);
    let bad = dir.path().join("holey.gguf");
    rewrite(&good, &bad, "blk.1.ffn_up.weight", &[]);
    let msg = load(&bad)
        .err()
        .expect("a missing tensor must be refused")
        .to_string();
    assert!(
        msg.contains("holey.gguf") && msg.contains("blk.1.ffn_up.weight"),
        "{msg}"
    );

    // Qwen2 needs its q/k/v biases.
    let q = tiny(dir.path(), Arch::Qwen2);
    let bad = dir.path().join("nobias.gguf");
    rewrite(&q, &bad, "blk.0.attn_k.bias", &[]);
    let msg = load(&bad)
        .err()
        .expect("a missing bias must be refused")
        .to_string();
    assert!(msg.contains("blk.0.attn_k.bias"), "{msg}");

    // Hugging Face: a tensor missing from the safetensors, a missing config.json.
    let hf = dir.path().join("hf");
    write_tiny_hf(&hf, &TinySpec::new(Arch::Qwen3, 5)).unwrap();
    let st = hf.join("model.safetensors");
    let mut map = candle_core::safetensors::load(&st, &Device::Cpu).unwrap();
    map.remove("model.layers.0.self_attn.q_norm.weight");
    candle_core::safetensors::save(&map, &st).unwrap();
    let msg = load(&hf)
        .err()
        .expect("missing q_norm must be refused")
        .to_string();
    assert!(
        msg.contains("model.layers.0.self_attn.q_norm.weight"),
        "{msg}"
    );
    std::fs::remove_file(hf.join("config.json")).unwrap();
    let msg = load(&hf)
        .err()
        .expect("missing config must be refused")
        .to_string();
    assert!(msg.contains("config.json"), "{msg}");
    // Truncated safetensors.
    let hf2 = dir.path().join("hf2");
    write_tiny_hf(&hf2, &TinySpec::new(Arch::Llama, 5)).unwrap();
    let st = hf2.join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    let msg = load(&hf2)
        .err()
        .expect("truncated safetensors must be refused")
        .to_string();
    assert!(msg.contains("model.safetensors"), "{msg}");
}

#[test]
fn context_overflow_and_bad_calls_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = TinySpec::new(Arch::Llama, 3);
    spec.context = 16;
    let path = dir.path().join("short.gguf");
    write_tiny_gguf(&path, &spec).unwrap();
    let lm = load(&path).unwrap();
    assert_eq!(lm.info().max_context, 16);
    let seq: Vec<u32> = (0..17).map(|i| i % 90).collect();
    let e = lm.prefill(&seq).expect_err("17 tokens exceed 16");
    assert!(
        matches!(
            e,
            EngineError::ContextOverflow {
                tokens: 0,
                max_new: 17,
                context: 16
            }
        ),
        "{e}"
    );
    let p = lm.prefill(&seq[..14]).unwrap();
    let e = lm.extend(&p, &seq[..3]).expect_err("14 + 3 exceed 16");
    assert!(
        matches!(
            e,
            EngineError::ContextOverflow {
                tokens: 14,
                max_new: 3,
                ..
            }
        ),
        "{e}"
    );
    let mut b = lm.batch(&p, 2).unwrap();
    lm.step(&mut b, &[1, 2]).unwrap();
    lm.step(&mut b, &[1, 2]).unwrap();
    let e = lm
        .step(&mut b, &[1, 2])
        .expect_err("the 17th position overflows");
    assert!(
        matches!(e, EngineError::ContextOverflow { tokens: 16, .. }),
        "{e}"
    );

    let msg = lm
        .prefill(&[3, 96])
        .expect_err("id 96 is outside a vocab of 96")
        .to_string();
    assert!(msg.contains("96"), "{msg}");
    assert!(lm.extend(&p, &[]).is_err());
    let mut b = lm.batch(&p.truncate(4), 2).unwrap();
    assert!(lm.step(&mut b, &[1]).is_err(), "one token for two rows");
    assert!(b.retain(&[true]).is_err(), "one flag for two rows");
    b.retain(&[false, false]).unwrap();
    assert_eq!(b.rows(), 0);
    assert!(lm.step(&mut b, &[]).is_err());
}

#[test]
fn rotary_scaling_is_refused_not_run_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let good = tiny(dir.path(), Arch::Llama);
    let bad = dir.path().join("yarn.gguf");
    rewrite(
        &good,
        &bad,
        "",
        &[("llama.rope.scaling.type", Value::String("yarn".into()))],
    );
    let msg = load(&bad).err().expect("yarn must be refused").to_string();
    assert!(msg.contains("yarn.gguf") && msg.contains("yarn"), "{msg}");
    // "none" is plain rope.
    rewrite(
        &good,
        &bad,
        "",
        &[("llama.rope.scaling.type", Value::String("none".into()))],
    );
    assert!(load(&bad).is_ok());

    let hf = dir.path().join("hf");
    write_tiny_hf(&hf, &TinySpec::new(Arch::Llama, 5)).unwrap();
    let cfg = std::fs::read_to_string(hf.join("config.json")).unwrap();
    let scaled = cfg.replacen(
        '{',
        r#"{"rope_scaling": {"rope_type": "llama3", "factor": 8.0},"#,
        1,
    );
    std::fs::write(hf.join("config.json"), scaled).unwrap();
    let msg = load(&hf)
        .err()
        .expect("llama3 scaling must be refused")
        .to_string();
    assert!(
        msg.contains("config.json") && msg.contains("llama3"),
        "{msg}"
    );
}
