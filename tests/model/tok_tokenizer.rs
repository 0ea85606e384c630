//! The tokenizer without downloads: a tiny byte-level BPE built in code, the same vocabulary
//! written into a tiny GGUF (read back through `from_gguf`) and saved as a tokenizer.json.

use std::path::Path;

use anchorscope::engine::lm::testing::{
    byte_level_tokenizer, byte_level_vocab, BYTE_LEVEL_MERGES, BYTE_LEVEL_SPECIALS,
};
use anchorscope::engine::tokenizer::TextTokenizer;
use anchorscope::engine::EngineError;
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use proptest::prelude::*;
use tokenizers::Tokenizer;

const SPECIALS: [&str; 3] = BYTE_LEVEL_SPECIALS;
const MERGES: [(&str, &str); 7] = BYTE_LEVEL_MERGES;

/// Specials first (ids 0..3, as SmolLM2 orders them), then the 256 byte tokens, then merges.
fn tiny_vocab() -> Vec<String> {
    byte_level_vocab()
}

fn tiny_tokenizer() -> Tokenizer {
    byte_level_tokenizer().unwrap()
}

fn in_code() -> TextTokenizer {
    TextTokenizer::from_tokenizer(tiny_tokenizer(), Path::new("tiny"), None, vec![0])
}

fn write_gguf(path: &Path, metadata: &[(&str, Value)]) {
    let dummy = QTensor::quantize(
        &Tensor::zeros((2, 32), candle_core::DType::F32, &Device::Cpu).unwrap(),
        GgmlDType::F32,
    )
    .unwrap();
    let meta: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let mut file = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut file, &meta, &[("dummy.weight", &dummy)]).unwrap();
}

fn strings(v: impl IntoIterator<Item = String>) -> Value {
    Value::Array(v.into_iter().map(Value::String).collect())
}

/// The tiny vocabulary as GGUF metadata, `model`/`pre` overridable.
fn tiny_gguf_metadata(model: &str, pre: &str) -> Vec<(&'static str, Value)> {
    let tokens = tiny_vocab();
    let types = tokens
        .iter()
        .enumerate()
        .map(|(i, _)| Value::I32(if i < SPECIALS.len() { 3 } else { 1 }))
        .collect();
    vec![
        ("general.architecture", Value::String("llama".into())),
        ("tokenizer.ggml.model", Value::String(model.into())),
        ("tokenizer.ggml.pre", Value::String(pre.into())),
        ("tokenizer.ggml.tokens", strings(tokens)),
        ("tokenizer.ggml.token_type", Value::Array(types)),
        (
            "tokenizer.ggml.merges",
            strings(MERGES.iter().map(|(a, b)| format!("{a} {b}"))),
        ),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
        (
            "tokenizer.chat_template",
            Value::String("{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}".into()),
        ),
    ]
}

fn tiny_gguf(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("tiny.gguf");
    write_gguf(&path, &tiny_gguf_metadata("gpt2", "smollm"));
    path
}

const SAMPLES: [&str; 5] = [
    "hello world",
    "  hello\n\n  world 12 123\t",
    "naïve — 日本 🙂",
    "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n",
    "",
];

/// The offset contract: ranges on char boundaries, in order, tiling the text where no token
/// splits a char (tokens splitting one char repeat its range), and the tokens' own bytes spell
/// the text.
fn assert_offsets_cover(tok: &TextTokenizer, text: &str) {
    let with = tok.encode_with_offsets(text).unwrap();
    let mut end = 0;
    let mut last: Option<std::ops::Range<usize>> = None;
    let mut spelled = Vec::new();
    for (id, r) in &with {
        assert!(
            text.is_char_boundary(r.start) && text.is_char_boundary(r.end),
            "{r:?}"
        );
        let repeat = last.as_ref() == Some(r);
        assert!(
            repeat || r.start == end,
            "{text:?}: token {id} at {r:?} after {end}"
        );
        end = r.end;
        last = Some(r.clone());
        spelled.extend(tok.token_bytes(*id).unwrap());
    }
    assert_eq!(end, text.len(), "{text:?}");
    assert_eq!(spelled, text.as_bytes());
    let ids: Vec<u32> = with.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, tok.encode(text).unwrap());
}

#[test]
fn in_code_tokenizer_merges_round_trips_and_offsets() {
    let tok = in_code();
    let hello = 3 + 256 + 3; // "hello"
    let space_w = 3 + 256 + 4; // "Ġw"
    let ids = tok.encode("hello world").unwrap();
    assert_eq!(ids[..2], [hello, space_w]);
    assert_eq!(tok.encode("<|im_start|>").unwrap(), vec![1]);
    // Digits are split one by one before BPE, so the "1 2" merge never applies.
    assert_eq!(tok.encode("12").unwrap().len(), 2);
    for text in SAMPLES {
        assert_eq!(tok.decode(&tok.encode(text).unwrap()).unwrap(), text);
        assert_offsets_cover(&tok, text);
    }
    // A multi-byte char split over two byte tokens: both get the char's range.
    let with = tok.encode_with_offsets("aé").unwrap();
    assert_eq!(with.len(), 3);
    assert_eq!(
        with.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(),
        [0..1, 1..3, 1..3]
    );
    assert_eq!(tok.token_bytes(with[1].0).unwrap(), vec![0xc3]);
    let spans = tok.encode_with_byte_spans("aé").unwrap();
    let spans: Vec<_> = spans.into_iter().map(|(_, r)| r).collect();
    assert_eq!(spans, [0..1, 1..2, 2..3]);
    assert_eq!(tok.vocab_size(), 3 + 256 + MERGES.len());
}

#[test]
fn decode_rejects_ids_outside_the_vocabulary() {
    let tok = in_code();
    let e = tok.decode(&[5, 100_000]).unwrap_err().to_string();
    assert!(e.contains("100000") && e.contains("tiny"), "{e}");
}

#[test]
fn gguf_tokenizer_equals_the_in_code_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_gguf(dir.path());
    let gguf = TextTokenizer::from_gguf(&path).unwrap();
    let code = in_code();
    assert_eq!(gguf.vocab_size(), code.vocab_size());
    for text in SAMPLES {
        assert_eq!(
            gguf.encode(text).unwrap(),
            code.encode(text).unwrap(),
            "{text:?}"
        );
        assert_eq!(gguf.decode(&gguf.encode(text).unwrap()).unwrap(), text);
        assert_offsets_cover(&gguf, text);
    }
    assert_eq!(gguf.bos_token_id, Some(1));
    // eos from the metadata, then the turn-end specials the vocabulary has.
    assert_eq!(gguf.eos_token_ids, vec![2, 0]);
    assert!(gguf
        .chat_template
        .as_deref()
        .unwrap()
        .contains("<|im_start|>"));
    assert_eq!(gguf.source(), path.as_path());
}

#[test]
fn gguf_pre_tokenizers_differ_as_their_families_do() {
    let dir = tempfile::tempdir().unwrap();
    let encode = |pre: &str, text: &str| {
        let path = dir.path().join(format!("{pre}.gguf"));
        write_gguf(&path, &tiny_gguf_metadata("gpt2", pre));
        TextTokenizer::from_gguf(&path)
            .unwrap()
            .encode(text)
            .unwrap()
    };
    let twelve = 3 + 256 + 5;
    // GPT-2 keeps digit runs together (the "12" merge applies); SmolLM splits every digit;
    // Llama 3 groups up to three digits, Qwen2 splits each.
    assert_eq!(encode("gpt-2", "12"), vec![twelve]);
    assert_eq!(encode("smollm", "12").len(), 2);
    assert_eq!(encode("llama-bpe", "12"), vec![twelve]);
    assert_eq!(encode("qwen2", "12").len(), 2);
    for pre in ["gpt-2", "smollm", "llama-bpe", "qwen2"] {
        let path = dir.path().join(format!("{pre}.gguf"));
        let tok = TextTokenizer::from_gguf(&path).unwrap();
        for text in SAMPLES {
            assert_eq!(
                tok.decode(&tok.encode(text).unwrap()).unwrap(),
                text,
                "{pre}"
            );
            assert_offsets_cover(&tok, text);
        }
    }
}

fn model_error(e: EngineError) -> (std::path::PathBuf, String) {
    match e {
        EngineError::Model { path, message } => (path, message),
        other => panic!("expected a Model error, got {other:?}"),
    }
}

#[test]
fn unsupported_gguf_tokenizers_name_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let spm = dir.path().join("spm.gguf");
    write_gguf(&spm, &tiny_gguf_metadata("llama", "default"));
    let (path, message) = model_error(TextTokenizer::from_gguf(&spm).err().unwrap());
    assert_eq!(path, spm);
    assert!(
        message.contains("tokenizer.ggml.model") && message.contains("llama"),
        "{message}"
    );

    let odd = dir.path().join("odd.gguf");
    write_gguf(&odd, &tiny_gguf_metadata("gpt2", "mystery"));
    let (path, message) = model_error(TextTokenizer::from_gguf(&odd).err().unwrap());
    assert_eq!(path, odd);
    assert!(
        message.contains("tokenizer.ggml.pre") && message.contains("mystery"),
        "{message}"
    );

    let none = dir.path().join("none.gguf");
    write_gguf(
        &none,
        &[("general.architecture", Value::String("llama".into()))],
    );
    let (_, message) = model_error(TextTokenizer::from_gguf(&none).err().unwrap());
    assert!(message.contains("tokenizer.ggml.model"), "{message}");

    let mut bad_merge = tiny_gguf_metadata("gpt2", "smollm");
    bad_merge[5].1 = strings(["he".to_string()]);
    let bm = dir.path().join("merge.gguf");
    write_gguf(&bm, &bad_merge);
    let (_, message) = model_error(TextTokenizer::from_gguf(&bm).err().unwrap());
    assert!(message.contains("tokenizer.ggml.merges"), "{message}");
}

#[test]
fn missing_or_broken_files_are_model_errors() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("absent.gguf");
    let (path, _) = model_error(TextTokenizer::from_gguf(&absent).err().unwrap());
    assert_eq!(path, absent);
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"not a gguf at all").unwrap();
    let (path, message) = model_error(TextTokenizer::from_gguf(&junk).err().unwrap());
    assert_eq!(path, junk);
    assert!(message.contains("GGUF"), "{message}");
    // A GGUF cut short inside its metadata.
    let full = tiny_gguf(dir.path());
    let bytes = std::fs::read(&full).unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    assert!(TextTokenizer::from_gguf(&cut).is_err());
    let json = dir.path().join("tokenizer.json");
    let (path, _) = model_error(TextTokenizer::from_file(&json).err().unwrap());
    assert_eq!(path, json);
    std::fs::write(&json, "{ not json").unwrap();
    let (path, _) = model_error(TextTokenizer::from_file(&json).err().unwrap());
    assert_eq!(path, json);
}

#[test]
fn tokenizer_json_loads_with_ids_from_configs() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("tokenizer.json");
    // Files may ask for fixed padding and truncation (embedders' do); prompts must get neither.
    let mut saved = tiny_tokenizer();
    saved.with_padding(Some(tokenizers::PaddingParams {
        strategy: tokenizers::PaddingStrategy::Fixed(64),
        ..Default::default()
    }));
    saved
        .with_truncation(Some(tokenizers::TruncationParams {
            max_length: 3,
            ..Default::default()
        }))
        .unwrap();
    saved.save(&json, false).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"bos_token_id": 1, "eos_token_id": [2, 7]}"#,
    )
    .unwrap();
    let tok = TextTokenizer::from_file(&json).unwrap();
    let code = in_code();
    for text in SAMPLES {
        assert_eq!(tok.encode(text).unwrap(), code.encode(text).unwrap());
        assert_offsets_cover(&tok, text);
    }
    assert_eq!(tok.bos_token_id, Some(1));
    assert_eq!(tok.eos_token_ids, vec![2, 7, 0]);
}

#[test]
fn check_model_catches_foreign_tokenizers() {
    let tok = in_code();
    let n = tok.vocab_size();
    let model = Path::new("/m/model.gguf");
    tok.check_model(n, model).unwrap();
    tok.check_model(n + 64, model).unwrap(); // padded embedding table
    for model_vocab in [n - 1, n + 10_000] {
        match tok.check_model(model_vocab, model).unwrap_err() {
            EngineError::TokenizerMismatch { path, message } => {
                assert_eq!(path, model);
                assert!(message.contains(&n.to_string()), "{message}");
                assert!(message.contains(&model_vocab.to_string()), "{message}");
                assert!(message.contains("tiny"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn any_text_round_trips_with_covering_offsets(text in "\\PC{0,40}|[ \n\t0-9a-zé]{0,30}") {
        let tok = in_code();
        let ids = tok.encode(&text).unwrap();
        prop_assert_eq!(tok.decode(&ids).unwrap(), text.clone());
        let with = tok.encode_with_offsets(&text).unwrap();
        let mut start = 0;
        let mut spelled = Vec::new();
        for (id, r) in &with {
            prop_assert!(text.is_char_boundary(r.start) && text.is_char_boundary(r.end));
            prop_assert!(r.start >= start && r.end >= r.start);
            start = r.start;
            spelled.extend(tok.token_bytes(*id).unwrap());
        }
        prop_assert_eq!(with.last().map_or(0, |(_, r)| r.end), text.len());
        prop_assert_eq!(spelled, text.as_bytes());
    }
}
