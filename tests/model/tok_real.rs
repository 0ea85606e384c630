//! Checks against the real files (SmolLM2 GGUF, all-MiniLM-L6-v2); each test skips with a note
//! when the file is absent (CI has no downloads).

use anchorscope::engine::chat::ChatTemplate;
use anchorscope::engine::embed::{cosine, SentenceEmbedder};
use anchorscope::engine::tokenizer::TextTokenizer;
use anchorscope::trace::Message;

use crate::real::{embedder as real_embedder, model as real_model};

#[test]
fn smollm2_gguf_tokenizer_matches_reference() {
    let Some(path) = real_model() else { return };
    let tok = TextTokenizer::from_gguf(&path).unwrap();
    assert_eq!(tok.vocab_size(), 49152);
    // HuggingFaceTB/SmolLM2-135M-Instruct's tokenizer.json encodes "Hello world" as these ids.
    assert_eq!(tok.encode("Hello world").unwrap(), vec![19556, 905]);
    let im_start = tok.encode("<|im_start|>").unwrap();
    assert_eq!(im_start.len(), 1, "{im_start:?}");
    assert_eq!(tok.token_id("<|im_start|>"), Some(im_start[0]));
    let im_end = tok.token_id("<|im_end|>").unwrap();
    assert!(
        tok.eos_token_ids.contains(&im_end),
        "{:?}",
        tok.eos_token_ids
    );
    eprintln!(
        "bos {:?} eos {:?} im_start {:?} im_end {im_end}",
        tok.bos_token_id, tok.eos_token_ids, im_start
    );
    assert!(tok
        .chat_template
        .as_deref()
        .unwrap_or("")
        .contains("<|im_start|>"));
    tok.check_model(49152, &path).unwrap();
}

#[test]
fn smollm2_round_trips_and_offsets() {
    let Some(path) = real_model() else { return };
    let tok = TextTokenizer::from_gguf(&path).unwrap();
    let texts = [
        "Hello world",
        "  two  spaces,\ttab\n\nnewlines\r\n and 12345 digits",
        "unicode: naïve café — 日本語 🙂 Ελληνικά",
        "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
        "<SCRATCHPAD_REASONING>I'm on the free tier.</SCRATCHPAD_REASONING>",
        "",
    ];
    for text in texts {
        let ids = tok.encode(text).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), text);
        let with = tok.encode_with_offsets(text).unwrap();
        assert_eq!(with.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids);
        // Char-aligned ranges: sliceable, in order, covering the text.
        let mut start = 0;
        for (_, r) in &with {
            assert!(text.is_char_boundary(r.start) && text.is_char_boundary(r.end));
            assert!(r.start >= start && r.end >= r.start, "{text:?}: {r:?}");
            start = r.start;
        }
        assert_eq!(with.last().map_or(0, |(_, r)| r.end), text.len());
        // Exact byte spans tile the text strictly and spell it.
        let spans = tok.encode_with_byte_spans(text).unwrap();
        let mut end = 0;
        for (id, r) in &spans {
            assert_eq!(r.start, end, "{text:?}");
            assert_eq!(tok.token_bytes(*id).unwrap(), &text.as_bytes()[r.clone()]);
            end = r.end;
        }
        assert_eq!(end, text.len());
    }
    let chat = ChatTemplate::for_model("llama", "SmolLM2-135M-Instruct");
    assert_eq!(chat, ChatTemplate::ChatMl);
    let prompt = chat.render_prompt(&[Message::new("user", "Hi")]);
    let ids = tok.encode(&prompt).unwrap();
    assert_eq!(ids[0], tok.token_id("<|im_start|>").unwrap());
}

#[test]
fn minilm_similarities() {
    let Some(dir) = real_embedder() else { return };
    let emb = SentenceEmbedder::load(&dir, &candle_core::Device::Cpu).unwrap();
    let a = "The user is on the free tier.";
    let b = "This user is a free-tier user.";
    let c = "Photosynthesis converts light into sugar.";
    let batch = emb.embed(&[a, b, c]).unwrap();
    assert_eq!(batch.len(), 3);
    for v in &batch {
        assert_eq!(v.len(), 384);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }
    let ab = cosine(&batch[0], &batch[1]);
    let ac = cosine(&batch[0], &batch[2]);
    eprintln!("cos(a,b) = {ab:.4}, cos(a,c) = {ac:.4}");
    assert!(ab > ac && ab > 0.6, "{ab} {ac}");
    // Padding in a batch must not change a sentence's embedding.
    for (i, text) in [a, b, c].iter().enumerate() {
        let single = emb.embed(&[text]).unwrap();
        for (x, y) in single[0].iter().zip(&batch[i]) {
            assert!((x - y).abs() < 1e-4, "{text}: {x} vs {y}");
        }
    }
}

/// SmolLM2's own chat template (from the GGUF) renders the conversations anchorscope uses
/// exactly as the built-in ChatML template did before the model's template was read.
#[test]
fn smollm2_own_template_renders_exactly_as_the_builtin_chatml() {
    let Some(path) = real_model() else { return };
    let generator = anchorscope::engine::worker::LmGenerator::load(
        &path,
        &anchorscope::engine::device::select("cpu").unwrap(),
    )
    .unwrap();
    assert!(
        generator.template.uses_model_template(),
        "{:?}",
        generator.template.note()
    );
    for messages in [
        vec![
            Message::new(
                "system",
                "You are an AI created by Anthropic.\n\nReason first.",
            ),
            Message::new("user", "<is_free_tier_user>True</is_free_tier_user>\n\nHi"),
        ],
        vec![
            Message::new("system", "Be brief."),
            Message::new("user", "Hi"),
            Message::new("assistant", "Hello."),
            Message::new("user", "Why?"),
        ],
    ] {
        assert_eq!(
            generator.template.render_prompt(&messages).unwrap(),
            anchorscope::engine::chat::ChatTemplate::ChatMl.render_prompt(&messages)
        );
    }
}
