//! `anchorscope serve`: load the model, bind, print `listening on http://HOST:PORT`, serve.

use std::io::Write;

use anyhow::Context;

use anchorscope::engine::{device, worker};
use anchorscope::serve::engine::Engine;
use anchorscope::serve::faults::FaultConfig;
use anchorscope::serve::{ServeConfig, Server, API_KEY_ENV, DEFAULT_MAX_BODY};

use super::ServeArgs;

pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    if args.max_queue == 0 {
        anyhow::bail!("--max-queue 0: must be at least 1");
    }
    let choice = args
        .model
        .as_deref()
        .map_or(worker::ModelChoice::Default, worker::ModelChoice::parse);
    let mut log = |s: anchorscope::engine::EngineStatus| eprintln!("{s}");
    let path = worker::resolve_model(&choice, &mut log)?;
    let (device, fallback) = device::select_explained(&args.device)?;
    if let Some(why) = fallback {
        eprintln!("{why}");
    }
    eprintln!("loading {}…", path.display());
    let generator = worker::LmGenerator::load(&path, &device)?;
    eprintln!(
        "model ready: {} on {}",
        generator.describe(),
        worker::device_name(&device)
    );
    if let Some(note) = generator.template.note() {
        eprintln!("warning: {note}");
    }
    let engine = Engine::new(generator);
    let model_name = args
        .served_model_name
        .clone()
        .unwrap_or_else(|| default_name(&path, engine.model_name()));
    let api_key = std::env::var(API_KEY_ENV).ok().filter(|k| !k.is_empty());
    let config = ServeConfig {
        host: args.host.clone(),
        port: args.port,
        model_name: model_name.clone(),
        max_queue: args.max_queue,
        api_key,
        max_body: DEFAULT_MAX_BODY,
        max_connections: args.max_connections,
        faults: faults(args)?,
    };
    let auth = if config.api_key.is_some() {
        format!(", API key required ({API_KEY_ENV})")
    } else {
        String::new()
    };
    let server = Server::bind(config, engine)
        .with_context(|| format!("binding {}:{}", args.host, args.port))?;
    let addr = server.local_addr().context("reading the bound address")?;
    eprintln!("serving `{model_name}`{auth}");
    // Tests and scripts wait for this line (with port 0 it carries the real port).
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on http://{addr}")?;
    out.flush()?;
    drop(out);
    server.run().context("accepting connections")?;
    Ok(())
}

/// The model file's stem (`SmolLM2-135M-Instruct.Q4_1`) or the directory's name: what users
/// recognise, unlike GGUF `general.name`s such as "Smollm2 135M 8k Lc100K Mix1 Ep2".
/// The injected faults: none in a normal build (the flags exist only with `test-support`).
#[cfg(feature = "test-support")]
fn faults(args: &ServeArgs) -> anyhow::Result<FaultConfig> {
    let f = &args.faults;
    if f.fault_malformed_every == Some(0) {
        anyhow::bail!("--fault-malformed-every 0: must be at least 1");
    }
    Ok(FaultConfig {
        delay_ms: f.fault_delay_ms,
        malformed_every: f.fault_malformed_every,
        status_every: f.fault_status_every,
    })
}

#[cfg(not(feature = "test-support"))]
fn faults(_args: &ServeArgs) -> anyhow::Result<FaultConfig> {
    Ok(FaultConfig::default())
}

fn default_name(path: &std::path::Path, fallback: &str) -> String {
    let stem = if path.is_dir() {
        path.file_name()
    } else {
        path.file_stem()
    };
    stem.map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| fallback.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_name_is_the_file_stem() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            default_name(&dir.path().join("SmolLM2-135M-Instruct.Q4_1.gguf"), "x"),
            "SmolLM2-135M-Instruct.Q4_1"
        );
        let model_dir = dir.path().join("Qwen2.5-0.5B");
        std::fs::create_dir(&model_dir).unwrap();
        assert_eq!(default_name(&model_dir, "x"), "Qwen2.5-0.5B");
    }
}
