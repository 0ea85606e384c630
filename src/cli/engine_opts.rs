//! Engine options shared by the commands that sample (`open`, `analyze`, `collect`), and the
//! provenance helpers they record in manifests (model hash, date).

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use sha2::{Digest, Sha256};

use anchorscope::engine::remote::{EngineKind, EngineSettings};
use anchorscope::engine::worker::{ModelChoice, WorkerConfig};
use anchorscope::trace::SamplerSettings;

/// Devices `--device` accepts.
pub const DEVICES: [&str; 3] = ["auto", "cpu", "cuda"];

/// `--engine`: which engine samples rollouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    /// The candle model on this machine.
    Local,
    /// An OpenAI-compatible server (vLLM, SGLang, `anchorscope serve`).
    Openai,
}

/// `--engine`, `--url`: sample on this machine or through an inference server.
#[derive(Clone, Debug, Default, Args)]
pub struct RemoteArgs {
    /// Which engine samples: local (the candle model) or openai (an OpenAI-compatible server;
    /// then --model is the served model's name). Default: the config's [engine] kind, else local.
    #[arg(long, value_enum, value_name = "KIND")]
    pub engine: Option<EngineArg>,

    /// The server's base URL for --engine openai, e.g. http://gpu-node:8000 (a trailing /v1 is
    /// accepted). The API key is read from the variable named by the config's
    /// [engine] api_key_env.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}

/// The `[engine]` settings after the command line: `--engine` and `--url` override the config,
/// and with the openai engine `--model` names the served model.
pub fn engine_settings(
    remote: &RemoteArgs,
    model: Option<&str>,
    config: &anchorscope::config::Config,
) -> anyhow::Result<EngineSettings> {
    let mut s = config.engine.clone();
    match remote.engine {
        Some(EngineArg::Local) => s.kind = EngineKind::Local,
        Some(EngineArg::Openai) => s.kind = EngineKind::Openai,
        None => {}
    }
    if s.kind == EngineKind::Local {
        if let Some(url) = &remote.url {
            bail!("--url {url}: only used with --engine openai");
        }
        return Ok(s);
    }
    if let Some(url) = &remote.url {
        s.url = Some(url.clone());
    }
    if let Some(model) = model {
        s.model = Some(model.to_string());
    }
    s.validate().map_err(|e| anyhow::anyhow!(e))?;
    Ok(s)
}

/// `--model`, `--device`, `--no-engine`, `--engine`, `--url` of the explorer.
#[derive(Clone, Debug, Default, Args)]
pub struct EngineArgs {
    /// Model for resampling (`r`/`R`): a GGUF file, a model directory (config.json,
    /// tokenizer.json, *.safetensors), or `default` (installed into the cache on first use);
    /// with --engine openai, the served model's name.
    #[arg(long, value_name = "PATH|default|NAME")]
    pub model: Option<String>,

    #[command(flatten)]
    pub remote: RemoteArgs,

    /// Where the model runs: auto (the GPU when this build and machine have one), cpu, cuda.
    #[arg(long, value_name = "DEVICE", value_parser = DEVICES, default_value = "auto")]
    pub device: String,

    /// Open the explorer without the sampling engine (no model is loaded or installed).
    #[arg(long, conflicts_with = "model")]
    pub no_engine: bool,
}

impl EngineArgs {
    /// The worker the explorer should start, or None with `--no-engine`.
    pub fn worker_config(
        &self,
        config: &anchorscope::config::Config,
    ) -> anyhow::Result<Option<WorkerConfig>> {
        if self.no_engine {
            return Ok(None);
        }
        let engine = engine_settings(&self.remote, self.model.as_deref(), config)?;
        Ok(Some(worker_config(
            self.model.as_deref(),
            &self.device,
            true,
            config,
            engine,
        )))
    }
}

/// The model and sampler options of the commands that sample a trace (`analyze`,
/// `intervene`), flattened into each so both read them the same way.
#[derive(Clone, Debug, Args)]
pub struct SamplingArgs {
    /// A GGUF file, a model directory, `default`, or a model `anchorscope model install` knows
    /// (smollm2-135m, qwen2.5-0.5b), the last two installed on first use; with --engine openai,
    /// the served model's name.
    #[arg(long, value_name = "PATH|default|NAME")]
    pub model: Option<String>,

    #[command(flatten)]
    pub remote: RemoteArgs,

    /// Where the model runs: auto, cpu, cuda.
    #[arg(long, value_name = "DEVICE", value_parser = DEVICES, default_value = "auto")]
    pub device: String,

    /// Token cap per rollout (default: that of the run the trace's rates pool, so new rollouts
    /// join them; else the trace's manifest; else 1024).
    #[arg(long, value_name = "N")]
    pub max_new_tokens: Option<u32>,

    /// Sampling temperature; 0 is greedy (default: as for --max-new-tokens, else 0.6).
    #[arg(long, value_name = "T")]
    pub temperature: Option<f64>,

    /// Nucleus sampling mass (default: as for --max-new-tokens, else 0.95).
    #[arg(long, value_name = "P")]
    pub top_p: Option<f64>,

    /// Do not load the sentence embedder (no similarity is recorded: counterfactual importance
    /// then has no different-meaning set, and a deletion no resilience).
    #[arg(long)]
    pub no_embedder: bool,
}

impl SamplingArgs {
    /// The sampler settings: `base` (the trace's recorded ones, else the defaults) with the
    /// flags over it.
    pub fn sampler(&self, base: SamplerSettings) -> anyhow::Result<SamplerSettings> {
        sampler_settings(base, self.max_new_tokens, self.temperature, self.top_p)
    }

    /// The `[engine]` settings after `--engine`, `--url` and `--model`.
    pub fn engine(&self, config: &anchorscope::config::Config) -> anyhow::Result<EngineSettings> {
        engine_settings(&self.remote, self.model.as_deref(), config)
    }

    /// The worker's configuration on `engine`.
    pub fn worker(
        &self,
        config: &anchorscope::config::Config,
        engine: EngineSettings,
    ) -> WorkerConfig {
        worker_config(
            self.model.as_deref(),
            &self.device,
            !self.no_embedder,
            config,
            engine,
        )
    }
}

/// The model a worker samples with, as progress lines and manifests name it: the served model's
/// name through an inference server, else the local model's.
pub fn model_label(worker: &WorkerConfig) -> String {
    match (&worker.engine.model, &worker.model) {
        (Some(name), _) if worker.engine.kind == EngineKind::Openai => name.clone(),
        (_, choice) => choice.label(),
    }
}

/// A worker configuration from command-line values (model `None` = the default model; with an
/// openai engine the model is the server's and `model` is not a path).
pub fn worker_config(
    model: Option<&str>,
    device: &str,
    embedder: bool,
    config: &anchorscope::config::Config,
    engine: EngineSettings,
) -> WorkerConfig {
    let model = match engine.kind {
        EngineKind::Local => model.map_or(ModelChoice::Default, ModelChoice::parse),
        EngineKind::Openai => ModelChoice::Default,
    };
    WorkerConfig {
        model,
        device: device.to_string(),
        embedder,
        behaviors: config.behaviors.clone(),
        split: config.split.clone(),
        engine,
        judge: config.judge.clone(),
    }
}

/// `--max-new-tokens`, `--temperature`, `--top-p` over a base (the trace's recorded settings or
/// the defaults); out-of-range values are errors naming the option.
pub fn sampler_settings(
    base: SamplerSettings,
    max_new_tokens: Option<u32>,
    temperature: Option<f64>,
    top_p: Option<f64>,
) -> anyhow::Result<SamplerSettings> {
    let mut s = base;
    if let Some(t) = temperature {
        if !(t.is_finite() && t >= 0.0) {
            bail!("--temperature {t}: must be a number ≥ 0 (0 = greedy)");
        }
        s.temperature = t;
    }
    if let Some(p) = top_p {
        if !(p > 0.0 && p <= 1.0) {
            bail!("--top-p {p}: must be in (0, 1]");
        }
        s.top_p = p;
    }
    if let Some(n) = max_new_tokens {
        if n == 0 {
            bail!("--max-new-tokens 0: must be at least 1");
        }
        s.max_new_tokens = n;
    }
    Ok(s)
}

/// `sha256:<hex>` of a model file; for a directory, of its `*.safetensors` files in name order.
pub fn model_hash(path: &Path) -> anyhow::Result<String> {
    let mut hasher = Sha256::new();
    let files = if path.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut buf = vec![0u8; 1 << 20];
    for file in files {
        let mut f =
            std::fs::File::open(&file).with_context(|| format!("hashing {}", file.display()))?;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("sha256:{hex}"))
}

/// Today's date and time in UTC (one implementation, in the library).
pub use anchorscope::store::runs::now_utc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_overrides_are_checked() {
        let s = sampler_settings(SamplerSettings::default(), Some(64), Some(0.0), None).unwrap();
        assert_eq!((s.max_new_tokens, s.temperature, s.top_p), (64, 0.0, 0.95));
        let err = sampler_settings(SamplerSettings::default(), None, None, Some(1.5)).unwrap_err();
        assert!(err.to_string().contains("--top-p"), "{err}");
        assert!(sampler_settings(SamplerSettings::default(), None, Some(-1.0), None).is_err());
        assert!(sampler_settings(SamplerSettings::default(), Some(0), None, None).is_err());
    }

    #[test]
    fn engine_flags_override_the_config() {
        let config = anchorscope::config::Config::default();
        let local = engine_settings(&RemoteArgs::default(), Some("m.gguf"), &config).unwrap();
        assert_eq!(local.kind, EngineKind::Local);
        let remote = RemoteArgs {
            engine: Some(EngineArg::Openai),
            url: Some("http://h:8000".into()),
        };
        let s = engine_settings(&remote, Some("served"), &config).unwrap();
        assert_eq!(
            (s.kind, s.url.as_deref(), s.model.as_deref()),
            (EngineKind::Openai, Some("http://h:8000"), Some("served"))
        );
        let err = engine_settings(&remote, None, &config).unwrap_err();
        assert!(err.to_string().contains("--model"), "{err}");
        let url_only = RemoteArgs {
            engine: None,
            url: Some("http://h".into()),
        };
        let err = engine_settings(&url_only, None, &config).unwrap_err();
        assert!(err.to_string().contains("--engine openai"), "{err}");
    }

    #[test]
    fn hash_of_a_file_and_of_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("m.gguf");
        std::fs::write(&f, b"abc").unwrap();
        assert_eq!(
            model_hash(&f).unwrap(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        std::fs::write(dir.path().join("a.safetensors"), b"abc").unwrap();
        assert_eq!(model_hash(dir.path()).unwrap(), model_hash(&f).unwrap());
        assert!(model_hash(&dir.path().join("missing")).is_err());
    }
}
