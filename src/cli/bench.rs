//! `anchorscope bench`: the speed benchmark. Measures the same jobs in anchorscope and in the
//! peer (Python `transformers`, or llama.cpp's programs: [`super::bench_llama`], on the same
//! model file), each job in its own child process so its peak RSS is its own, then prints
//! tokens/s, the ratio, wall time and peak memory, our memory at several row counts, and the
//! decode roofline.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use candle_core::Device;

use anchorscope::bench::flops::MatmulRate;
use anchorscope::bench::flops::{
    decode_flops_per_token, mean_decode_context, measure_block_kernel, measure_matmul,
};
use anchorscope::bench::job::JobSpec;
use anchorscope::bench::machine::{gpu_name, machine_info};
use anchorscope::bench::report::{
    memory_table, mib, results_table, roofline_text, BenchResult, Roofline,
};
use anchorscope::bench::{inputs, JobKind, JobReport};
use anchorscope::config::Config;
use anchorscope::engine::device;
use anchorscope::engine::lm::Config as ModelConfig;
use anchorscope::engine::worker::{resolve_model, LmGenerator, ModelChoice};
use anchorscope::store::atomic_write;

use super::bench_llama::{openai_client_sweep, LlamaCpp};
use super::engine_opts::now_utc;
use super::{load, BenchArgs, PeerArg};

/// The peer script, shipped inside the binary so `bench` works from any directory.
const PEER_SCRIPT: &str = include_str!("../../scripts/bench_peer.py");

/// Seconds each matmul shape is timed for the roofline.
const MATMUL_TIME: Duration = Duration::from_secs(1);

pub fn run(args: &BenchArgs, config: &Config) -> anyhow::Result<()> {
    for (name, value) in [
        ("--rows", args.rows),
        ("--new-tokens", args.new_tokens),
        ("--prefix-tokens", args.prefix_tokens),
        ("--positions", args.positions),
    ] {
        if value == 0 {
            bail!("{name} 0: must be at least 1");
        }
    }
    let memory_rows = parse_rows(&args.memory_rows)?;
    let job_names = parse_jobs(&args.jobs)?;
    let work = WorkDir::new()?;
    let python = match args.peer {
        PeerArg::Python => Some(Peer::check(&args.python, &work.0)?),
        PeerArg::LlamaCpp | PeerArg::None => None,
    };
    let mut status = |s: anchorscope::engine::EngineStatus| eprintln!("{s}");
    let choice = ModelChoice::parse(args.model.as_deref().unwrap_or("default"));
    let model = resolve_model(&choice, &mut status)?;
    let device = device::select(&args.device)?;
    let device_arg = if device.is_cpu() { "cpu" } else { "cuda" };
    let llama = match (args.peer, &args.llama_cpp) {
        (PeerArg::LlamaCpp, None) => bail!(
            "--peer llama.cpp needs --llama-cpp DIR (scripts/bench.sh --peer llama.cpp builds \
             llama.cpp and passes it)"
        ),
        (PeerArg::LlamaCpp, Some(dir)) if device.is_cpu() => {
            // The threads our side uses (one per core), so both sides get the same CPU.
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            Some(LlamaCpp::check(dir, &model, threads, &work.0)?)
        }
        (PeerArg::LlamaCpp, Some(_)) => {
            bail!("--peer llama.cpp: the CPU build only (--device cpu)")
        }
        _ => None,
    };

    let trace_path = match &args.trace {
        Some(p) => p.clone(),
        None => default_trace()?,
    };
    let outcome = load::load(&trace_path, &config.split)?;
    let trace = load::select_one(outcome.traces, None)?.trace;
    eprintln!("bench: tokenizing {} for both sides…", trace_path.display());
    // The tokenizer and chat template come with the model; CPU is enough for that.
    let gen = LmGenerator::load(&model, &Device::Cpu)
        .with_context(|| format!("loading {}", model.display()))?;
    let bench_inputs = inputs::build(
        &gen,
        &trace,
        &trace_path.display().to_string(),
        args.prefix_tokens,
        args.positions,
        0.6,
        0.95,
    )?;
    let cfg = gen.lm.config().clone();
    // The llama.cpp peer's openai-client job counts tokens with the model's tokenizer.
    let tokenizer_gen = llama.is_some().then_some(gen);
    let inputs_path = work.0.join("inputs.json");
    std::fs::write(&inputs_path, serde_json::to_vec(&bench_inputs)?)
        .with_context(|| format!("writing {}", inputs_path.display()))?;

    let ours = Ours {
        inputs: &inputs_path,
        device: device_arg,
        new_tokens: args.new_tokens,
    };
    let mut notes = Vec::new();
    let mut jobs = Vec::new();
    for job in job_names {
        eprintln!(
            "bench: anchorscope {job} ({} rows × {} tokens)…",
            args.rows, args.new_tokens
        );
        jobs.push(said(ours.run(job, args.rows)?));
        if let Some(peer) = &python {
            eprintln!("bench: transformers {job}…");
            match peer.job(&inputs_path, job, args.rows, args.new_tokens, device_arg) {
                Ok(r) => jobs.push(said(r)),
                Err(e) => notes.push(format!("the peer's {job} job failed: {e:#}")),
            }
        }
        if let (Some(llama), Some(gen)) = (&llama, &tokenizer_gen) {
            let spec = JobSpec {
                kind: if job == "single" {
                    JobKind::Single
                } else {
                    JobKind::Sweep
                },
                rows: args.rows,
                new_tokens: args.new_tokens,
            };
            match llama_jobs(llama, &bench_inputs, &spec, &gen.tokenizer, &mut notes) {
                Ok(reports) => jobs.extend(reports.into_iter().map(said)),
                Err(e) => notes.push(format!("llama.cpp's {job} job failed: {e:#}")),
            }
        }
    }
    let mut memory = Vec::new();
    for &rows in &memory_rows {
        let same = jobs
            .iter()
            .find(|j| j.side == "anchorscope" && j.job == "single" && j.rows == rows);
        let report = match same {
            Some(r) => r.clone(),
            None => {
                eprintln!("bench: anchorscope memory at {rows} rows…");
                said(ours.run("memory", rows)?)
            }
        };
        memory.push(JobReport {
            job: "memory".into(),
            ..report
        });
    }

    eprintln!("bench: matmul rates…");
    let shapes = [(args.rows, cfg.hidden, cfg.ffn), (1024, 1024, 1024)];
    let matmul_candle = shapes
        .iter()
        .map(|&s| measure_matmul(&device, s, MATMUL_TIME))
        .collect::<Result<Vec<_>, _>>()?;
    let matmul_blocks: Vec<MatmulRate> = shapes
        .iter()
        .filter_map(|&s| measure_block_kernel(&device, s, MATMUL_TIME))
        .collect();
    let matmul_torch = match &python {
        Some(peer) => match peer.matmul(&shapes, device_arg) {
            Ok(r) => r,
            Err(e) => {
                notes.push(format!("torch matmul failed: {e:#}"));
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    // Both sides are held against the best matmul rate measured on this machine.
    let all_rates: Vec<MatmulRate> = matmul_candle
        .iter()
        .chain(&matmul_blocks)
        .chain(&matmul_torch)
        .cloned()
        .collect();
    let roofline = jobs
        .iter()
        .filter_map(|j| roofline_of(j, &cfg, &all_rates))
        .collect();

    for j in jobs.iter().chain(&memory) {
        let short = j
            .finish
            .iter()
            .filter(|(k, _)| *k != "length")
            .map(|(_, n)| n)
            .sum::<usize>();
        if short > 0 {
            notes.push(format!(
                "{} {} (rows {}): {short} of {} rollouts stopped before {} tokens (eos or end \
                 of output); tokens/s counts the tokens actually generated",
                j.side, j.job, j.rows, j.rollouts, j.new_tokens
            ));
        }
        for e in &j.errors {
            notes.push(format!("{} {}: {e}", j.side, j.job));
        }
        // What the llama.cpp sides measured differently (the transformers peer's note is only
        // its versions, already in the JSON).
        if let Some(note) = j.note.as_ref().filter(|_| j.side != "transformers") {
            notes.push(format!("{} {}: {note}", j.side, j.job));
        }
    }
    if args.peer == PeerArg::None {
        notes.push("--peer none: no peer was run".into());
    }
    let device_label = if device.is_cpu() {
        "cpu".to_string()
    } else {
        gpu_name().unwrap_or_else(|| "cuda".into())
    };
    let result = BenchResult {
        machine: machine_info(&device_label, &now_utc()),
        model: model.display().to_string(),
        source: bench_inputs.source.clone(),
        requested_prefix_tokens: args.prefix_tokens,
        single_prefix_tokens: bench_inputs.single.ids.len(),
        sweep_positions: bench_inputs.sweep.iter().map(|p| p.position).collect(),
        temperature: bench_inputs.temperature,
        top_p: bench_inputs.top_p,
        jobs,
        memory,
        matmul_candle,
        matmul_blocks,
        matmul_torch,
        roofline,
        notes,
    };
    print!("{}", render(&result));
    if let Some(out) = &args.json {
        let mut text = serde_json::to_string_pretty(&result)?;
        text.push('\n');
        atomic_write(out, text.as_bytes()).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("bench: results written to {}", out.display());
    }
    Ok(())
}

/// The llama.cpp peer's reports for one job: llama-batched-bench for the single job; for the
/// sweep, llama-server's own sweep and then our openai client against the same server (the
/// server is killed when this returns, also on error).
fn llama_jobs(
    llama: &LlamaCpp,
    inputs: &anchorscope::bench::BenchInputs,
    spec: &JobSpec,
    tokenizer: &anchorscope::engine::tokenizer::TextTokenizer,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<JobReport>> {
    match spec.kind {
        JobKind::Single => {
            eprintln!("bench: llama-batched-bench single…");
            let report = llama.single(inputs.single.ids.len(), spec.rows, spec.new_tokens)?;
            Ok(vec![report])
        }
        JobKind::Sweep => {
            let prefixes: Vec<usize> = inputs.sweep.iter().map(|p| p.ids.len()).collect();
            eprintln!("bench: starting llama-server…");
            let server = llama.server(&prefixes, spec.rows, spec.new_tokens)?;
            eprintln!("bench: llama-server sweep…");
            let mut reports = vec![server.sweep(inputs, spec.rows, spec.new_tokens)?];
            eprintln!("bench: our openai client against llama-server, sweep…");
            match openai_client_sweep(&server, inputs, spec, tokenizer) {
                Ok(r) => reports.push(r),
                Err(e) => notes.push(format!("our openai client against llama-server: {e:#}")),
            }
            Ok(reports)
        }
    }
}

/// Say a job's result on stderr as soon as it is in (a long run that fails later keeps it).
fn said(r: JobReport) -> JobReport {
    eprintln!(
        "bench: {} {}: {} tokens in {:.2} s = {:.1} tokens/s, peak RSS {} MiB",
        r.side,
        r.job,
        r.tokens_generated,
        r.wall_s,
        r.tokens_per_s,
        mib(r.peak_rss_bytes)
    );
    r
}

/// The printed report: what was run, the jobs table, memory, roofline, notes.
fn render(r: &BenchResult) -> String {
    let mut out = format!(
        "anchorscope bench — {} on {} ({} cores, {}), {}\nmodel {}\ntext {}: single prefix {} \
         tokens (asked {}), sweep positions {:?}; temperature {}, top-p {}\n\n",
        r.machine.cpu,
        r.machine.device,
        r.machine.cores,
        r.machine.os,
        r.machine.date,
        r.model,
        r.source,
        r.single_prefix_tokens,
        r.requested_prefix_tokens,
        r.sweep_positions,
        r.temperature,
        r.top_p,
    );
    out.push_str(&results_table(&r.jobs));
    for j in r
        .jobs
        .iter()
        .filter(|j| j.job == "sweep" && j.position_s.len() > 1)
    {
        let rest = &j.position_s[1..];
        out.push_str(&format!(
            "sweep {}: first position {:.2} s, the other {} {:.2} s on average{}\n",
            j.side,
            j.position_s[0],
            rest.len(),
            rest.iter().sum::<f64>() / rest.len() as f64,
            if j.side == "anchorscope" {
                " (the first includes the trace's one prefill)"
            } else {
                " (each prefills its own prompt)"
            }
        ));
    }
    if !r.memory.is_empty() {
        out.push_str("\nmemory (anchorscope, single prefix):\n");
        out.push_str(&memory_table(&r.memory));
    }
    out.push('\n');
    let rates: Vec<MatmulRate> = r
        .matmul_candle
        .iter()
        .chain(&r.matmul_blocks)
        .chain(&r.matmul_torch)
        .cloned()
        .collect();
    out.push_str(&roofline_text(&rates, &r.roofline));
    for n in &r.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    out
}

/// The decode roofline of one job: FLOPs per token at its mean context × its tokens/s.
fn roofline_of(job: &JobReport, cfg: &ModelConfig, rates: &[MatmulRate]) -> Option<Roofline> {
    let n = job.prefix_tokens.len().max(1) as f64;
    let prefix = job.prefix_tokens.iter().sum::<usize>() as f64 / n;
    let context = mean_decode_context(prefix.round() as usize, job.new_tokens);
    let flops = decode_flops_per_token(cfg, context.round() as usize);
    Roofline::new(
        &format!("{} {}", job.job, job.side),
        flops,
        context,
        job.tokens_per_s,
        rates,
    )
}

/// `1,16,64` → [1, 16, 64]; empty or `none` → no memory runs.
pub fn parse_rows(spec: &str) -> anyhow::Result<Vec<usize>> {
    let spec = spec.trim();
    if spec.is_empty() || spec == "none" {
        return Ok(Vec::new());
    }
    let mut rows = Vec::new();
    for part in spec.split(',') {
        match part.trim().parse::<usize>() {
            Ok(n) if n > 0 => rows.push(n),
            _ => bail!("--memory-rows {spec}: {part:?} is not a row count ≥ 1"),
        }
    }
    rows.sort_unstable();
    rows.dedup();
    Ok(rows)
}

/// `sweep,single` → the jobs named, in the benchmark's order (single first).
pub fn parse_jobs(spec: &str) -> anyhow::Result<Vec<&'static str>> {
    let mut wanted = Vec::new();
    for part in spec.split(',').map(str::trim) {
        match ["single", "sweep"].into_iter().find(|j| *j == part) {
            Some(j) => wanted.push(j),
            None => bail!("--jobs {spec}: {part:?} is not a job (single, sweep)"),
        }
    }
    Ok(["single", "sweep"]
        .into_iter()
        .filter(|j| wanted.contains(j))
        .collect())
}

/// The longest `q-*.json` trace in ./sample-traces (or the source tree's), by file size.
fn default_trace() -> anyhow::Result<PathBuf> {
    let dirs = [
        PathBuf::from("sample-traces"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-traces"),
    ];
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        let mut best: Option<(u64, PathBuf)> = None;
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with("q-") && name.ends_with(".json") && !name.contains(".rollouts.") {
                let size = std::fs::metadata(&path).map_or(0, |m| m.len());
                if best.as_ref().is_none_or(|(s, _)| size > *s) {
                    best = Some((size, path));
                }
            }
        }
        if let Some((_, path)) = best {
            return Ok(path);
        }
    }
    bail!("no sample trace (sample-traces/q-*.json) found here: pass --trace FILE")
}

/// A scratch directory for the inputs and the peer script, removed when the run ends.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new() -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir =
            std::env::temp_dir().join(format!("anchorscope-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(WorkDir(dir))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Our jobs: this binary's hidden `bench-job` command in a child process.
struct Ours<'a> {
    inputs: &'a Path,
    device: &'a str,
    new_tokens: usize,
}

impl Ours<'_> {
    fn run(&self, job: &str, rows: usize) -> anyhow::Result<JobReport> {
        let exe = std::env::current_exe().context("finding this program to run its job")?;
        let mut command = Command::new(exe);
        command
            .arg("bench-job")
            .arg("--inputs")
            .arg(self.inputs)
            .args([
                "--job",
                job,
                "--rows",
                &rows.to_string(),
                "--new-tokens",
                &self.new_tokens.to_string(),
                "--device",
                self.device,
            ]);
        child_report(command, &format!("anchorscope bench-job {job}"))
    }
}

/// Run a child that prints one JSON report as its last stdout line.
fn child_report<T: serde::de::DeserializeOwned>(
    mut command: Command,
    what: &str,
) -> anyhow::Result<T> {
    let output = command
        .output()
        .with_context(|| format!("{what}: cannot start"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("{what} failed ({}):\n{}", output.status, tail.join("\n"));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .with_context(|| format!("{what} printed no result"))?;
    serde_json::from_str(line).with_context(|| format!("{what}: unexpected output {line:?}"))
}

/// The Python peer: an interpreter that has the packages, and the script written beside it.
struct Peer {
    python: PathBuf,
    script: PathBuf,
}

/// What the peer script imports.
const PEER_PACKAGES: &str = "torch, transformers, accelerate, gguf";

impl Peer {
    /// Check that `python` runs and imports the peer's packages, before any long job.
    fn check(python: &Path, work: &Path) -> anyhow::Result<Peer> {
        let output = Command::new(python)
            .args(["-c", "import torch, transformers, accelerate, gguf"])
            .output();
        let hint = "scripts/bench.sh makes a venv with them; or pass --peer none";
        match output {
            Err(e) => bail!(
                "--python {}: cannot run it ({e}); give a Python with {PEER_PACKAGES} ({hint})",
                python.display()
            ),
            Ok(o) if !o.status.success() => {
                let err = String::from_utf8_lossy(&o.stderr);
                let last = err.lines().last().unwrap_or("").trim();
                bail!(
                    "--python {}: the peer needs {PEER_PACKAGES}: {last} ({hint})",
                    python.display()
                )
            }
            Ok(_) => {}
        }
        let script = work.join("bench_peer.py");
        std::fs::write(&script, PEER_SCRIPT)
            .with_context(|| format!("writing {}", script.display()))?;
        Ok(Peer {
            python: python.to_path_buf(),
            script,
        })
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.python);
        c.arg(&self.script);
        c
    }

    fn job(
        &self,
        inputs: &Path,
        job: &str,
        rows: usize,
        new_tokens: usize,
        device: &str,
    ) -> anyhow::Result<JobReport> {
        let mut c = self.command();
        c.arg("--inputs").arg(inputs).args([
            "--job",
            job,
            "--rows",
            &rows.to_string(),
            "--new-tokens",
            &new_tokens.to_string(),
            "--device",
            device,
        ]);
        child_report(c, &format!("bench_peer.py {job}"))
    }

    fn matmul(
        &self,
        shapes: &[(usize, usize, usize)],
        device: &str,
    ) -> anyhow::Result<Vec<MatmulRate>> {
        #[derive(serde::Deserialize)]
        struct Rates {
            matmul: Vec<MatmulRate>,
        }
        let shapes: Vec<String> = shapes
            .iter()
            .map(|(m, k, n)| format!("{m}x{k}x{n}"))
            .collect();
        let mut c = self.command();
        c.args([
            "--inputs",
            "-",
            "--job",
            "matmul",
            "--device",
            device,
            "--shapes",
            &shapes.join(","),
            "--min-time",
            &MATMUL_TIME.as_secs_f64().to_string(),
        ]);
        child_report::<Rates>(c, "bench_peer.py matmul").map(|r| r.matmul)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_rows_parse_sort_and_reject_zero() {
        assert_eq!(parse_rows("64,1, 16").unwrap(), vec![1, 16, 64]);
        assert_eq!(parse_rows("none").unwrap(), Vec::<usize>::new());
        assert_eq!(parse_rows("").unwrap(), Vec::<usize>::new());
        let err = parse_rows("1,0").unwrap_err().to_string();
        assert!(err.contains("--memory-rows"), "{err}");
        assert!(parse_rows("a").is_err());
    }

    #[test]
    fn jobs_parse_in_order_and_reject_unknown_names() {
        assert_eq!(parse_jobs("sweep,single").unwrap(), vec!["single", "sweep"]);
        assert_eq!(parse_jobs("sweep").unwrap(), vec!["sweep"]);
        let err = parse_jobs("single,fast").unwrap_err().to_string();
        assert!(err.contains("\"fast\""), "{err}");
    }
}
