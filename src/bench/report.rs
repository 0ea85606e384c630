//! The benchmark's printed tables and its JSON result. Pure formatting: every number comes from
//! a [`JobReport`] or a measured [`MatmulRate`].

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::flops::MatmulRate;
use super::job::JobReport;
use super::machine::MachineInfo;

/// The decode roofline: model FLOPs per generated token × measured tokens/s against the
/// measured matmul rate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Roofline {
    /// Job whose tokens/s is used (ours).
    pub job: String,
    pub flops_per_token: f64,
    /// Mean context the FLOPs assume (prefix + half the new tokens).
    pub mean_context: f64,
    pub tokens_per_s: f64,
    pub achieved_flops_per_s: f64,
    /// The best matmul rate measured on this machine (FLOP/s, either library), and its
    /// library and shape.
    pub peak_flops_per_s: f64,
    pub peak_shape: String,
    pub fraction_of_peak: f64,
}

impl Roofline {
    /// From a FLOPs/token figure, a tokens/s and the machine's measured matmul rates (the best
    /// of them is the peak).
    pub fn new(
        job: &str,
        flops_per_token: f64,
        mean_context: f64,
        tokens_per_s: f64,
        rates: &[MatmulRate],
    ) -> Option<Roofline> {
        let best = rates
            .iter()
            .max_by(|a, b| a.flops_per_s.total_cmp(&b.flops_per_s))?;
        let achieved = flops_per_token * tokens_per_s;
        Some(Roofline {
            job: job.into(),
            flops_per_token,
            mean_context,
            tokens_per_s,
            achieved_flops_per_s: achieved,
            peak_flops_per_s: best.flops_per_s,
            peak_shape: labelled_shape(best),
            fraction_of_peak: if best.flops_per_s > 0.0 {
                achieved / best.flops_per_s
            } else {
                0.0
            },
        })
    }
}

/// The whole run, as `--json` writes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchResult {
    pub machine: MachineInfo,
    pub model: String,
    pub source: String,
    pub requested_prefix_tokens: usize,
    pub single_prefix_tokens: usize,
    pub sweep_positions: Vec<usize>,
    pub temperature: f64,
    pub top_p: f64,
    /// Jobs of both sides (single, sweep), ours first.
    pub jobs: Vec<JobReport>,
    /// Our single job at each `--memory-rows` count.
    pub memory: Vec<JobReport>,
    pub matmul_candle: Vec<MatmulRate>,
    /// Our CPU block kernel on the same shapes (f32 × Q4_1), where it runs.
    #[serde(default)]
    pub matmul_blocks: Vec<MatmulRate>,
    #[serde(default)]
    pub matmul_torch: Vec<MatmulRate>,
    pub roofline: Vec<Roofline>,
    /// e.g. the peer was skipped, or why it failed.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// Bytes as MiB with one decimal, or `n/a`.
pub fn mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "n/a".into(), |b| format!("{:.1}", b as f64 / 1048576.0))
}

/// `a / b` as `3.21×`, or `n/a` when there is no peer rate.
pub fn ratio(ours: f64, peer: Option<f64>) -> String {
    match peer {
        Some(p) if p > 0.0 && ours.is_finite() => format!("{:.2}×", ours / p),
        _ => "n/a".into(),
    }
}

fn shape(r: &MatmulRate) -> String {
    format!("{}×{}×{}", r.m, r.k, r.n)
}

/// `torch 1024×1024×1024`.
fn labelled_shape(r: &MatmulRate) -> String {
    format!("{} {}", r.library, shape(r))
}

/// Whether a side is anchorscope's (`anchorscope`, `anchorscope openai→llama-server`).
fn is_ours(side: &str) -> bool {
    side.starts_with("anchorscope")
}

/// One line per job and side: precision, rows × tokens, generated, wall, tokens/s, the ratio
/// ours/peer (on our line) and peak RSS.
pub fn results_table(jobs: &[JobReport]) -> String {
    let header = [
        "job",
        "side",
        "precision",
        "rows×new",
        "prefix tok",
        "generated",
        "wall s",
        "tokens/s",
        "ours/peer",
        "peak RSS MiB",
    ];
    let mut rows: Vec<Vec<String>> = Vec::new();
    for r in jobs {
        // Our sides (the engine, our openai client) are held against the peer's rate.
        let peer = jobs
            .iter()
            .find(|p| p.job == r.job && !is_ours(&p.side))
            .map(|p| p.tokens_per_s);
        let prefix = match (r.prefix_tokens.iter().min(), r.prefix_tokens.iter().max()) {
            (Some(a), Some(b)) if a == b => a.to_string(),
            (Some(a), Some(b)) => format!("{a}–{b}"),
            _ => "n/a".into(),
        };
        rows.push(vec![
            r.job.clone(),
            r.side.clone(),
            r.precision.clone(),
            format!("{}×{}", r.rows, r.new_tokens),
            prefix,
            r.tokens_generated.to_string(),
            format!("{:.2}", r.wall_s),
            format!("{:.1}", r.tokens_per_s),
            if is_ours(&r.side) {
                ratio(r.tokens_per_s, peer)
            } else {
                String::new()
            },
            mib(r.peak_rss_bytes),
        ]);
    }
    grid(&header, &rows)
}

/// At each row count: the process's peak RSS, the job's own peak (after the model loaded) and
/// its growth per added row between consecutive counts, the rows' own KV and the shared prefix
/// KV.
pub fn memory_table(memory: &[JobReport]) -> String {
    let header = [
        "rows",
        "new tok",
        "prefix tok",
        "peak RSS MiB",
        "job peak MiB",
        "Δ job peak/row MiB",
        "own KV MiB",
        "prefix KV MiB",
        "tokens/s",
    ];
    let mut rows = Vec::new();
    let mut previous: Option<&JobReport> = None;
    for r in memory {
        let job_peak = r.job_peak_rss_bytes.or(r.peak_rss_bytes);
        let per_row = previous.and_then(|p| {
            let before = p.job_peak_rss_bytes.or(p.peak_rss_bytes)?;
            let now = job_peak?;
            (r.rows > p.rows).then(|| {
                format!(
                    "{:.2}",
                    (now as f64 - before as f64) / (r.rows - p.rows) as f64 / 1048576.0
                )
            })
        });
        rows.push(vec![
            r.rows.to_string(),
            r.new_tokens.to_string(),
            r.prefix_tokens
                .first()
                .map_or("n/a".into(), |p| p.to_string()),
            mib(r.peak_rss_bytes),
            mib(r.job_peak_rss_bytes),
            per_row.unwrap_or_default(),
            mib(r.own_kv_bytes),
            mib(r.prefix_kv_bytes),
            format!("{:.1}", r.tokens_per_s),
        ]);
        previous = Some(r);
    }
    grid(&header, &rows)
}

/// The matmul rates measured, then one roofline line per job.
pub fn roofline_text(rates: &[MatmulRate], roofline: &[Roofline]) -> String {
    let mut out = String::new();
    for r in rates {
        let _ = writeln!(
            out,
            "matmul {:<6} {:>14} {}: {:.1} GFLOP/s ({} runs)",
            r.library,
            shape(r),
            r.dtype,
            r.flops_per_s / 1e9,
            r.repeats
        );
    }
    for r in roofline {
        let _ = writeln!(
            out,
            "roofline {}: {:.1} MFLOP/token (context {:.0}) × {:.1} tokens/s = {:.2} GFLOP/s \
             = {:.1}% of the measured {:.1} GFLOP/s ({})",
            r.job,
            r.flops_per_token / 1e6,
            r.mean_context,
            r.tokens_per_s,
            r.achieved_flops_per_s / 1e9,
            100.0 * r.fraction_of_peak,
            r.peak_flops_per_s / 1e9,
            r.peak_shape
        );
    }
    out
}

/// Left-aligned columns separated by two spaces, a dashed rule under the header.
fn grid(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(cell);
            s.push_str(&" ".repeat(w - cell.chars().count()));
        }
        s.trim_end().to_string()
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    out.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect()));
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.clone()));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(side: &str, job: &str, tps: f64, rows: usize, peak: Option<u64>) -> JobReport {
        JobReport {
            side: side.into(),
            job: job.into(),
            precision: "f32".into(),
            rows,
            new_tokens: 64,
            prefix_tokens: vec![322],
            tokens_generated: (rows * 64) as u64,
            wall_s: 2.0,
            tokens_per_s: tps,
            peak_rss_bytes: peak,
            own_kv_bytes: Some(rows as u64 * 64 * 46_080),
            prefix_kv_bytes: Some(322 * 46_080),
            ..JobReport::default()
        }
    }

    #[test]
    fn ratio_formats_and_refuses_missing_peers() {
        assert_eq!(ratio(204.0, Some(68.0)), "3.00×");
        assert_eq!(ratio(10.0, None), "n/a");
        assert_eq!(ratio(10.0, Some(0.0)), "n/a");
    }

    #[test]
    fn mib_has_one_decimal() {
        assert_eq!(mib(Some(3 * 1048576 / 2)), "1.5");
        assert_eq!(mib(None), "n/a");
    }

    #[test]
    fn results_table_puts_the_ratio_on_our_line() {
        let jobs = vec![
            report("anchorscope", "single", 300.0, 16, Some(500 << 20)),
            report("transformers", "single", 100.0, 16, None),
            report("anchorscope", "sweep", 50.0, 16, None),
        ];
        let table = results_table(&jobs);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        assert!(lines[0].starts_with("job") && lines[0].contains("ours/peer"));
        assert!(
            lines[2].contains("3.00×") && lines[2].contains("500.0"),
            "{table}"
        );
        assert!(lines[2].contains("16×64") && lines[2].contains("1024"));
        assert!(!lines[3].contains('×') || lines[3].contains("16×64"));
        assert!(!lines[3].contains("3.00"));
        // No peer for the sweep: the ratio says so.
        assert!(lines[4].contains("n/a"), "{table}");
    }

    #[test]
    fn our_openai_client_is_also_held_against_the_peer() {
        let jobs = vec![
            report("anchorscope", "sweep", 300.0, 16, None),
            report("anchorscope openai→llama-server", "sweep", 50.0, 16, None),
            report("llama.cpp", "sweep", 100.0, 16, None),
        ];
        let table = results_table(&jobs);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[2].contains("3.00×"), "{table}");
        assert!(lines[3].contains("0.50×"), "{table}");
        // The peer's own line has no ratio: its only × is rows×new.
        assert_eq!(lines[4].matches('×').count(), 1, "{table}");
    }

    #[test]
    fn memory_table_shows_growth_per_row() {
        let mut memory = vec![
            report("anchorscope", "memory", 10.0, 1, Some(700 << 20)),
            report("anchorscope", "memory", 10.0, 17, Some(700 << 20)),
        ];
        // The process peaks are the same (the load's); the jobs' own peaks grow by 16 MiB.
        memory[0].job_peak_rss_bytes = Some(100 << 20);
        memory[1].job_peak_rss_bytes = Some(116 << 20);
        let table = memory_table(&memory);
        let last = table.lines().last().unwrap();
        assert!(last.contains("1.00") && last.contains("116.0"), "{table}");
        assert!(last.starts_with("17"));
        // Without the job's own peak the process peak is used.
        memory[0].job_peak_rss_bytes = None;
        memory[1].job_peak_rss_bytes = None;
        let table = memory_table(&memory);
        assert!(table.lines().last().unwrap().contains("0.00"), "{table}");
    }

    #[test]
    fn roofline_is_achieved_over_best_measured() {
        let rates = vec![
            MatmulRate {
                library: "candle".into(),
                m: 16,
                k: 576,
                n: 1536,
                dtype: "f32".into(),
                repeats: 3,
                flops_per_s: 50e9,
            },
            MatmulRate {
                library: "candle".into(),
                m: 1024,
                k: 1024,
                n: 1024,
                dtype: "f32".into(),
                repeats: 3,
                flops_per_s: 100e9,
            },
        ];
        let r = Roofline::new("single", 300e6, 354.5, 100.0, &rates).unwrap();
        assert_eq!(r.achieved_flops_per_s, 30e9);
        assert!((r.fraction_of_peak - 0.3).abs() < 1e-12);
        assert_eq!(r.peak_shape, "candle 1024×1024×1024");
        assert!(Roofline::new("single", 1.0, 1.0, 1.0, &[]).is_none());
        let text = roofline_text(&rates, &[r]);
        assert!(
            text.contains("30.00 GFLOP/s") && text.contains("30.0%"),
            "{text}"
        );
    }
}
