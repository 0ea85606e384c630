//! `anchorscope bench-job` (hidden): one measured job of `anchorscope bench`, in its own process
//! so that its peak RSS is the job's alone. Loads the model, runs the job through the worker's
//! job code, prints the [`JobReport`] as one JSON line on stdout.

use std::time::Instant;

use anyhow::Context;

use anchorscope::bench::machine::gpu_name;
use anchorscope::bench::{job, JobKind};
use anchorscope::engine::device;
use anchorscope::engine::worker::{device_name, LmGenerator};

use super::BenchJobArgs;

pub fn run(args: &BenchJobArgs) -> anyhow::Result<()> {
    let inputs = job::read_inputs(&args.inputs)?;
    let device = device::select(&args.device)?;
    let path = std::path::PathBuf::from(&inputs.model_path);
    let started = Instant::now();
    let mut gen =
        LmGenerator::load(&path, &device).with_context(|| format!("loading {}", path.display()))?;
    let load_s = started.elapsed().as_secs_f64();
    // What the engine actually did with the weights (all of it is f32 arithmetic).
    let precision = gen.lm.weights_summary();
    // Exactly --new-tokens per row, as the peer's min_new_tokens does.
    gen.ignore_stops = true;
    let device_label = if device.is_cpu() {
        "cpu".to_string()
    } else {
        gpu_name().unwrap_or_else(|| device_name(&device))
    };
    let kind = match args.job.as_str() {
        "single" | "memory" => JobKind::Single,
        _ => JobKind::Sweep,
    };
    let mut report = job::run(
        &mut gen,
        &inputs,
        &job::JobSpec {
            kind,
            rows: args.rows,
            new_tokens: args.new_tokens,
        },
        &job::Context {
            load_s,
            precision: &precision,
            device: &device_label,
        },
    )?;
    report.job = args.job.clone();
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
