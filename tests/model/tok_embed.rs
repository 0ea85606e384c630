//! The sentence embedder on a tiny random BERT written here (config.json, tokenizer.json,
//! model.safetensors), so CI needs no download.

use std::path::Path;

use anchorscope::engine::embed::{cosine, SentenceEmbedder};
use anchorscope::engine::tokenizer::TextTokenizer;
use anchorscope::engine::EngineError;
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use candle_transformers::models::bert::{BertModel, Config};

const WORDS: [&str; 17] = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "user", "is", "on", "free", "tier", ".", "a", "-",
    "this", "light", "sugar", "##s",
];

fn config_json(vocab_size: usize) -> String {
    format!(
        r#"{{"vocab_size": {vocab_size}, "hidden_size": 16, "num_hidden_layers": 2,
        "num_attention_heads": 2, "intermediate_size": 32, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "max_position_embeddings": 64, "type_vocab_size": 2,
        "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0}}"#
    )
}

fn tokenizer_json() -> String {
    let vocab: Vec<String> = WORDS
        .iter()
        .enumerate()
        .map(|(i, w)| format!("\"{w}\": {i}"))
        .collect();
    let added: Vec<String> = WORDS[..4]
        .iter()
        .enumerate()
        .map(|(i, w)| {
            format!(
                r#"{{"id": {i}, "content": "{w}", "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true}}"#
            )
        })
        .collect();
    format!(
        r###"{{"version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [{}],
        "normalizer": {{"type": "BertNormalizer", "clean_text": true,
            "handle_chinese_chars": true, "strip_accents": null, "lowercase": true}},
        "pre_tokenizer": {{"type": "BertPreTokenizer"}},
        "post_processor": {{"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]}},
        "decoder": {{"type": "WordPiece", "prefix": "##", "cleanup": true}},
        "model": {{"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100, "vocab": {{{}}}}}}}"###,
        added.join(","),
        vocab.join(",")
    )
}

/// Writes a random tiny BERT into `dir`.
fn tiny_bert(dir: &Path) {
    let text = config_json(32);
    std::fs::write(dir.join("config.json"), &text).unwrap();
    std::fs::write(dir.join("tokenizer.json"), tokenizer_json()).unwrap();
    let config: Config = serde_json::from_str(&text).unwrap();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    BertModel::load(vb, &config).unwrap();
    varmap.save(dir.join("model.safetensors")).unwrap();
}

#[test]
fn tiny_bert_gives_unit_vectors_equal_alone_and_batched() {
    let dir = tempfile::tempdir().unwrap();
    tiny_bert(dir.path());
    let emb = SentenceEmbedder::load(dir.path(), &Device::Cpu).unwrap();
    let texts = [
        "The user is on the free tier.",
        "this user is a free-tier user",
        "light",
        "Sugars unknownword",
    ];
    let batch = emb.embed(&texts).unwrap();
    assert_eq!(batch.len(), texts.len());
    for v in &batch {
        assert_eq!(v.len(), 16);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }
    // Texts of different lengths are padded in the batch; the mask must make that invisible.
    for (i, text) in texts.iter().enumerate() {
        let single = emb.embed(&[text]).unwrap();
        for (x, y) in single[0].iter().zip(&batch[i]) {
            assert!((x - y).abs() < 1e-4, "{text}: {x} vs {y}");
        }
    }
    assert!((cosine(&batch[0], &batch[0]) - 1.0).abs() < 1e-4);
    assert!((emb.similarity(texts[0], texts[0]).unwrap() - 1.0).abs() < 1e-4);
    assert!(cosine(&batch[0], &batch[2]) < 0.9999);
    assert!(emb.embed(&[]).unwrap().is_empty());
}

#[test]
fn missing_files_name_the_file() {
    for missing in ["config.json", "tokenizer.json", "model.safetensors"] {
        let dir = tempfile::tempdir().unwrap();
        tiny_bert(dir.path());
        std::fs::remove_file(dir.path().join(missing)).unwrap();
        match SentenceEmbedder::load(dir.path(), &Device::Cpu)
            .err()
            .unwrap()
        {
            EngineError::Model { path, message } => {
                assert_eq!(path, dir.path().join(missing));
                assert!(message.contains("missing"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn truncated_weights_and_foreign_tokenizers_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    tiny_bert(dir.path());
    let weights = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    match SentenceEmbedder::load(dir.path(), &Device::Cpu)
        .err()
        .unwrap()
    {
        EngineError::Model { path, .. } => assert_eq!(path, weights),
        other => panic!("{other:?}"),
    }

    let dir = tempfile::tempdir().unwrap();
    tiny_bert(dir.path());
    // A config whose vocabulary is smaller than the tokenizer's.
    std::fs::write(dir.path().join("config.json"), config_json(8)).unwrap();
    match SentenceEmbedder::load(dir.path(), &Device::Cpu)
        .err()
        .unwrap()
    {
        EngineError::TokenizerMismatch { path, message } => {
            assert_eq!(path, dir.path().join("tokenizer.json"));
            assert!(message.contains("17") && message.contains('8'), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn wordpiece_offsets_move_forward() {
    // A tokenizer that is not byte-level: offsets come from the tokenizer, clipped to be
    // non-decreasing and inside the text.
    let dir = tempfile::tempdir().unwrap();
    tiny_bert(dir.path());
    let tok = TextTokenizer::from_file(&dir.path().join("tokenizer.json")).unwrap();
    let text = "The user is on sugars.";
    let with = tok.encode_with_offsets(text).unwrap();
    let words: Vec<&str> = with.iter().map(|(_, r)| &text[r.clone()]).collect();
    assert_eq!(words, ["The", "user", "is", "on", "sugar", "s", "."]);
    assert_eq!(tok.token_bytes(4), None, "not byte-level");
}
