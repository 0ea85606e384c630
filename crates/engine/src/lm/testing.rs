//! Tiny models with seeded random weights, written as real GGUF files or Hugging Face
//! directories, so tests exercise the loaders and the decoder without any download.

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use super::config::Arch;
use crate::tokenizer::bytes_to_token;
use crate::EngineError;

/// The shape of a tiny test model.
#[derive(Clone, Debug)]
pub struct TinySpec {
    pub arch: Arch,
    pub vocab: usize,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub context: usize,
    pub seed: u64,
    /// GGUF only: store matrices as Q8_0 (the quantized kernels) instead of F32.
    /// Needs every matrix's input width to be a multiple of 32.
    pub quantized: bool,
    /// Tie the LM head to the embedding (no `output.weight` / `lm_head.weight`).
    pub tied: bool,
    /// Extra GGUF metadata (e.g. a tokenizer) written as given.
    pub extra_metadata: Vec<(String, Value)>,
}

impl TinySpec {
    /// Vocab 96, hidden 64, 2 layers, 4 heads over 2 KV heads, context 128.
    pub fn new(arch: Arch, seed: u64) -> TinySpec {
        TinySpec {
            arch,
            vocab: 96,
            hidden: 64,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            head_dim: 16,
            ffn: 128,
            context: 128,
            seed,
            quantized: false,
            tied: false,
            extra_metadata: Vec::new(),
        }
    }

    /// A complete model: the tiny byte-level BPE tokenizer ([`byte_level_metadata`]) in the
    /// GGUF metadata, the vocabulary sized to it, and a context of 512 so a ChatML prompt of a
    /// few lines (about one token per byte) fits. `LmGenerator::load` accepts the file.
    pub fn with_byte_level_tokenizer(mut self) -> TinySpec {
        self.vocab = byte_level_vocab().len();
        self.context = 512;
        self.extra_metadata.extend(byte_level_metadata());
        self
    }
}

/// The tiny tokenizer's special tokens, ids 0..3 (as SmolLM2 orders them). The GGUF's bos is 1
/// and eos 2 (see [`write_tiny_gguf`]), so `<|im_end|>` ends a turn.
pub const BYTE_LEVEL_SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// The tiny tokenizer's merges in byte-level spelling (`Ġ` is the space, `Ċ` the newline).
/// `ĊĊ` makes a prefix ending in a blank line tokenize differently alone than inside the whole
/// text (byte-level pre-tokenizers split whitespace by what follows), as real vocabularies do.
pub const BYTE_LEVEL_MERGES: [(&str, &str); 7] = [
    ("h", "e"),
    ("l", "l"),
    ("he", "ll"),
    ("hell", "o"),
    ("Ġ", "w"),
    ("1", "2"),
    ("Ċ", "Ċ"),
];

/// Specials first, then the 256 byte tokens, then one token per merge.
pub fn byte_level_vocab() -> Vec<String> {
    let mut tokens: Vec<String> = BYTE_LEVEL_SPECIALS.iter().map(|s| s.to_string()).collect();
    tokens.extend((0..=255u8).map(|b| bytes_to_token(&[b])));
    tokens.extend(BYTE_LEVEL_MERGES.iter().map(|(a, b)| format!("{a}{b}")));
    tokens
}

/// The same tokenizer built in code (SmolLM's pre-tokenizer: digits one by one, then byte-level),
/// e.g. to save as the `tokenizer.json` of a tiny Hugging Face directory.
pub fn byte_level_tokenizer() -> Result<tokenizers::Tokenizer, EngineError> {
    use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
    use tokenizers::models::bpe::BPE;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::pre_tokenizers::digits::Digits;
    use tokenizers::pre_tokenizers::sequence::Sequence;
    use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

    let vocab: tokenizers::models::bpe::Vocab = byte_level_vocab()
        .into_iter()
        .enumerate()
        .map(|(i, t)| (t, i as u32))
        .collect();
    let merges = BYTE_LEVEL_MERGES
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| EngineError::Other(format!("building the tiny tokenizer: {e}")))?;
    let mut tok = Tokenizer::new(bpe);
    let pre: PreTokenizerWrapper = Sequence::new(vec![
        Digits::new(true).into(),
        ByteLevel::new(false, false, true).into(),
    ])
    .into();
    tok.with_pre_tokenizer(Some(pre));
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    let specials: Vec<AddedToken> = BYTE_LEVEL_SPECIALS
        .iter()
        .map(|s| AddedToken::from(*s, true))
        .collect();
    tok.add_special_tokens(&specials);
    Ok(tok)
}

/// The tiny vocabulary as GGUF tokenizer metadata (`gpt2` model, `smollm` pre-tokenizer, a
/// ChatML chat template); bos/eos ids are written by [`write_tiny_gguf`] itself.
pub fn byte_level_metadata() -> Vec<(String, Value)> {
    let strings = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
    let tokens = byte_level_vocab();
    let types = (0..tokens.len())
        .map(|i| Value::I32(if i < BYTE_LEVEL_SPECIALS.len() { 3 } else { 1 }))
        .collect();
    let merges = BYTE_LEVEL_MERGES
        .iter()
        .map(|(a, b)| format!("{a} {b}"))
        .collect();
    vec![
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("smollm".into())),
        ("tokenizer.ggml.tokens".into(), strings(tokens)),
        ("tokenizer.ggml.token_type".into(), Value::Array(types)),
        ("tokenizer.ggml.merges".into(), strings(merges)),
        (
            "tokenizer.chat_template".into(),
            Value::String(TINY_CHAT_TEMPLATE.into()),
        ),
    ]
}

/// The tiny models' chat template (ChatML, as SmolLM2's renders a conversation with a system
/// message): in the GGUF metadata and in the Hugging Face directory's tokenizer_config.json.
pub const TINY_CHAT_TEMPLATE: &str =
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n\
     {% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// splitmix64: a tiny, well-mixed seeded generator (no rand dependency).
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn next_f32(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// One named tensor in Hugging Face layout ([out, in] matrices, HF rotary convention).
struct Named {
    hf: String,
    gguf: String,
    tensor: Tensor,
    /// A Llama q/k projection: llama.cpp permutes its rows for the interleaved rope.
    permute_heads: Option<usize>,
}

fn tensors(spec: &TinySpec) -> candle_core::Result<Vec<Named>> {
    let dev = Device::Cpu;
    let mut rng = SplitMix64(spec.seed);
    let mut rand = |shape: &[usize], scale: f32, offset: f32| -> candle_core::Result<Tensor> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| offset + scale * rng.next_f32()).collect();
        Tensor::from_vec(data, shape, &dev)
    };
    let (h, hd, f) = (spec.hidden, spec.head_dim, spec.ffn);
    let (qo, kvo) = (spec.heads * hd, spec.kv_heads * hd);
    // Weights large enough that the next token depends on the context (not near-uniform).
    let mat = |rows: usize, cols: usize| (vec![rows, cols], 1.7 / (cols as f32).sqrt());
    let mut out = Vec::new();
    let mut push = |hf: String, gguf: String, t: Tensor, permute_heads: Option<usize>| {
        out.push(Named {
            hf,
            gguf,
            tensor: t,
            permute_heads,
        })
    };
    push(
        "model.embed_tokens.weight".into(),
        "token_embd.weight".into(),
        rand(&[spec.vocab, h], 1.0, 0.0)?,
        None,
    );
    for i in 0..spec.layers {
        let (l, b) = (format!("model.layers.{i}."), format!("blk.{i}."));
        let llama = spec.arch == Arch::Llama;
        let mut m = |hf: &str, gg: &str, rows: usize, cols: usize, perm: Option<usize>| {
            let (shape, scale) = mat(rows, cols);
            Ok::<_, candle_core::Error>((
                format!("{l}{hf}"),
                format!("{b}{gg}"),
                rand(&shape, scale, 0.0)?,
                perm,
            ))
        };
        let mats = [
            m(
                "self_attn.q_proj.weight",
                "attn_q.weight",
                qo,
                h,
                llama.then_some(spec.heads),
            )?,
            m(
                "self_attn.k_proj.weight",
                "attn_k.weight",
                kvo,
                h,
                llama.then_some(spec.kv_heads),
            )?,
            m("self_attn.v_proj.weight", "attn_v.weight", kvo, h, None)?,
            m("self_attn.o_proj.weight", "attn_output.weight", h, qo, None)?,
            m("mlp.gate_proj.weight", "ffn_gate.weight", f, h, None)?,
            m("mlp.up_proj.weight", "ffn_up.weight", f, h, None)?,
            m("mlp.down_proj.weight", "ffn_down.weight", h, f, None)?,
        ];
        for (hf, gg, t, p) in mats {
            push(hf, gg, t, p);
        }
        let mut vecs = vec![
            ("input_layernorm.weight", "attn_norm.weight", h, 0.2, 1.0),
            (
                "post_attention_layernorm.weight",
                "ffn_norm.weight",
                h,
                0.2,
                1.0,
            ),
        ];
        if spec.arch == Arch::Qwen2 {
            vecs.push(("self_attn.q_proj.bias", "attn_q.bias", qo, 0.3, 0.0));
            vecs.push(("self_attn.k_proj.bias", "attn_k.bias", kvo, 0.3, 0.0));
            vecs.push(("self_attn.v_proj.bias", "attn_v.bias", kvo, 0.3, 0.0));
        }
        if spec.arch == Arch::Qwen3 {
            vecs.push((
                "self_attn.q_norm.weight",
                "attn_q_norm.weight",
                hd,
                0.2,
                1.0,
            ));
            vecs.push((
                "self_attn.k_norm.weight",
                "attn_k_norm.weight",
                hd,
                0.2,
                1.0,
            ));
        }
        for (hf, gg, n, scale, offset) in vecs {
            push(
                format!("{l}{hf}"),
                format!("{b}{gg}"),
                rand(&[n], scale, offset)?,
                None,
            );
        }
    }
    push(
        "model.norm.weight".into(),
        "output_norm.weight".into(),
        rand(&[h], 0.2, 1.0)?,
        None,
    );
    if !spec.tied {
        let (shape, scale) = mat(spec.vocab, h);
        push(
            "lm_head.weight".into(),
            "output.weight".into(),
            rand(&shape, scale * 2.0, 0.0)?,
            None,
        );
    }
    Ok(out)
}

fn model_err(path: &Path, e: impl std::fmt::Display) -> EngineError {
    EngineError::Model {
        path: path.to_path_buf(),
        message: format!("writing tiny model: {e}"),
    }
}

/// Write `spec` as a GGUF file (llama.cpp names, Llama q/k rows permuted like llama.cpp's
/// converter does).
pub fn write_tiny_gguf(path: &Path, spec: &TinySpec) -> Result<(), EngineError> {
    let err = |e: candle_core::Error| model_err(path, e);
    let arch = spec.arch.name();
    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        ("general.name".into(), Value::String(format!("tiny-{arch}"))),
        (
            format!("{arch}.block_count"),
            Value::U32(spec.layers as u32),
        ),
        (
            format!("{arch}.embedding_length"),
            Value::U32(spec.hidden as u32),
        ),
        (
            format!("{arch}.feed_forward_length"),
            Value::U32(spec.ffn as u32),
        ),
        (
            format!("{arch}.attention.head_count"),
            Value::U32(spec.heads as u32),
        ),
        (
            format!("{arch}.attention.head_count_kv"),
            Value::U32(spec.kv_heads as u32),
        ),
        (
            format!("{arch}.attention.key_length"),
            Value::U32(spec.head_dim as u32),
        ),
        (
            format!("{arch}.rope.dimension_count"),
            Value::U32(spec.head_dim as u32),
        ),
        (format!("{arch}.rope.freq_base"), Value::F32(10_000.0)),
        (
            format!("{arch}.attention.layer_norm_rms_epsilon"),
            Value::F32(1e-5),
        ),
        (
            format!("{arch}.context_length"),
            Value::U32(spec.context as u32),
        ),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
    ];
    md.extend(spec.extra_metadata.iter().cloned());
    let mut qs = Vec::new();
    for n in tensors(spec).map_err(err)? {
        let t = match n.permute_heads {
            Some(heads) => {
                let (rows, cols) = n.tensor.dims2().map_err(err)?;
                let d = rows / heads;
                n.tensor
                    .reshape((heads, 2, d / 2, cols))
                    .and_then(|t| t.transpose(1, 2))
                    .and_then(|t| t.contiguous())
                    .and_then(|t| t.reshape((rows, cols)))
                    .map_err(err)?
            }
            None => n.tensor,
        };
        let dtype = if spec.quantized && t.rank() == 2 {
            GgmlDType::Q8_0
        } else {
            GgmlDType::F32
        };
        qs.push((n.gguf, QTensor::quantize(&t, dtype).map_err(err)?));
    }
    let mut file = std::fs::File::create(path).map_err(|e| model_err(path, e))?;
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = qs.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut file, &md_refs, &t_refs).map_err(err)
}

/// Write `spec` as a Hugging Face directory: config.json + model.safetensors (f32).
pub fn write_tiny_hf(dir: &Path, spec: &TinySpec) -> Result<(), EngineError> {
    let err = |e: candle_core::Error| model_err(dir, e);
    std::fs::create_dir_all(dir).map_err(|e| model_err(dir, e))?;
    let model_type = spec.arch.name();
    let arch_class = match spec.arch {
        Arch::Llama => "LlamaForCausalLM",
        Arch::Qwen2 => "Qwen2ForCausalLM",
        Arch::Qwen3 => "Qwen3ForCausalLM",
    };
    let config = serde_json::json!({
        "architectures": [arch_class],
        "model_type": model_type,
        "hidden_size": spec.hidden,
        "intermediate_size": spec.ffn,
        "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads,
        "num_key_value_heads": spec.kv_heads,
        "head_dim": spec.head_dim,
        "vocab_size": spec.vocab,
        "max_position_embeddings": spec.context,
        "rope_theta": 10000.0,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": spec.tied,
        "bos_token_id": 1,
        "eos_token_id": 2,
    });
    std::fs::write(dir.join("config.json"), config.to_string()).map_err(|e| model_err(dir, e))?;
    // The chat template travels as a GGUF file's does (here: tokenizer_config.json).
    let template = spec.extra_metadata.iter().find_map(|(k, v)| match v {
        Value::String(t) if k == "tokenizer.chat_template" => Some(t.clone()),
        _ => None,
    });
    if let Some(template) = template {
        let tokenizer_config = serde_json::json!({ "chat_template": template });
        std::fs::write(
            dir.join("tokenizer_config.json"),
            tokenizer_config.to_string(),
        )
        .map_err(|e| model_err(dir, e))?;
    }
    let map: std::collections::HashMap<String, Tensor> = tensors(spec)
        .map_err(err)?
        .into_iter()
        .map(|n| (n.hf, n.tensor))
        .collect();
    candle_core::safetensors::save(&map, dir.join("model.safetensors")).map_err(err)
}

/// A unit test that needs something this machine may lack (AVX-512F for the block kernel):
/// skipped with a note locally, a failure under `CI=true`, where the machine has it and a
/// silent skip would hide a broken set-up.
pub fn missing(what: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} is missing under CI=true"
    );
    eprintln!("note: {what} is missing; skipping this test");
}
