//! Model hyper-parameters, read from GGUF metadata or a Hugging Face `config.json`.

/// The decoder families this engine implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
}

impl Arch {
    /// Listed in the error for any other architecture.
    pub const SUPPORTED: &'static str = "llama (incl. SmolLM2), qwen2, qwen3";

    /// GGUF `general.architecture`, HF `model_type` or an HF `architectures` entry.
    pub fn parse(name: &str) -> Option<Arch> {
        match name.to_ascii_lowercase().as_str() {
            "llama" | "llamaforcausallm" => Some(Arch::Llama),
            "qwen2" | "qwen2forcausallm" => Some(Arch::Qwen2),
            "qwen3" | "qwen3forcausallm" => Some(Arch::Qwen3),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
        }
    }
}

/// Everything the forward pass needs besides the weights.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub arch: Arch,
    pub n_layers: usize,
    pub hidden: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub vocab_size: usize,
    pub max_context: usize,
    pub rope_theta: f32,
    pub rms_eps: f64,
    /// llama.cpp stores Llama q/k rows permuted for the interleaved rotary convention
    /// (pairs 2i, 2i+1); Hugging Face weights and Qwen GGUFs use the half-split one.
    pub rope_interleaved: bool,
}

impl Config {
    /// Query heads per KV head (grouped-query attention).
    pub fn groups(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }

    /// Reject shapes the forward pass cannot run, with the setting named.
    pub fn check(&self) -> Result<(), String> {
        let positive = [
            ("block_count", self.n_layers),
            ("embedding_length", self.hidden),
            ("head_count", self.n_heads),
            ("head_count_kv", self.n_kv_heads),
            ("head_dim", self.head_dim),
            ("feed_forward_length", self.ffn),
            ("vocab size", self.vocab_size),
            ("context_length", self.max_context),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("{name} is 0"));
            }
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(format!(
                "head_count {} is not a multiple of head_count_kv {}",
                self.n_heads, self.n_kv_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(format!("head_dim {} is odd", self.head_dim));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_names_from_gguf_and_hugging_face() {
        assert_eq!(Arch::parse("llama"), Some(Arch::Llama));
        assert_eq!(Arch::parse("LlamaForCausalLM"), Some(Arch::Llama));
        assert_eq!(Arch::parse("qwen2"), Some(Arch::Qwen2));
        assert_eq!(Arch::parse("Qwen3ForCausalLM"), Some(Arch::Qwen3));
        assert_eq!(Arch::parse("gpt2"), None);
        assert_eq!(Arch::parse("qwen2moe"), None);
    }

    #[test]
    fn check_names_the_bad_setting() {
        let mut c = Config {
            arch: Arch::Llama,
            n_layers: 2,
            hidden: 64,
            n_heads: 4,
            n_kv_heads: 3,
            head_dim: 16,
            ffn: 128,
            vocab_size: 10,
            max_context: 16,
            rope_theta: 10_000.0,
            rms_eps: 1e-5,
            rope_interleaved: true,
        };
        assert!(c.check().unwrap_err().contains("head_count_kv"));
        c.n_kv_heads = 2;
        assert!(c.check().is_ok());
        assert_eq!(c.groups(), 2);
        c.max_context = 0;
        assert!(c.check().unwrap_err().contains("context_length"));
    }
}
