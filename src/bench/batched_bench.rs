//! llama.cpp's `llama-batched-bench` as the peer of the single job: its command line and its
//! JSONL output (`--output-format jsonl`, one object per measured configuration).
//!
//! What differs from our single job (the report's note says it): batched-bench cannot take a
//! prompt, only a prompt length (`-npp`), and fills the prompt and every "generated" token with
//! random token ids; it decodes the rows but samples nothing (no softmax, no top-p), so its
//! time is the model's forward passes alone. Ours includes sampling, labels and store writes.

use serde::Deserialize;

use super::job::{rate, JobReport};

/// One configuration measured: prompt `pp` shared by `pl` rows, `tg` tokens each.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct BatchedBenchRow {
    pub pp: usize,
    pub tg: usize,
    pub pl: usize,
    pub n_kv: usize,
    pub is_pp_shared: u8,
    pub n_threads: u32,
    /// Prompt processing, seconds (once, when the prompt is shared).
    pub t_pp: f64,
    /// Generating every row's `tg` tokens, seconds.
    pub t_tg: f64,
    /// `t_pp + t_tg`.
    pub t: f64,
}

/// The arguments for one shared-prompt run: `prefix` prompt tokens, `rows` rows of
/// `new_tokens`, unified KV, `threads` threads, a context that fits exactly that.
pub fn args(
    model: &str,
    prefix: usize,
    rows: usize,
    new_tokens: usize,
    threads: usize,
) -> Vec<String> {
    let context = prefix + rows * new_tokens + 16;
    [
        "-m",
        model,
        "-c",
        &context.to_string(),
        "-b",
        "2048",
        "-ub",
        "512",
        "-npp",
        &prefix.to_string(),
        "-ntg",
        &new_tokens.to_string(),
        "-npl",
        &rows.to_string(),
        "-pps",
        "-kvu",
        "-t",
        &threads.to_string(),
        "-tb",
        &threads.to_string(),
        "--output-format",
        "jsonl",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Every JSONL result line of the output (log lines, blank lines and the table are skipped).
pub fn parse_output(text: &str) -> Result<Vec<BatchedBenchRow>, String> {
    let mut rows = Vec::new();
    for line in text.lines().map(str::trim) {
        if !(line.starts_with('{') && line.contains("\"t_tg\"")) {
            continue;
        }
        rows.push(
            serde_json::from_str(line)
                .map_err(|e| format!("llama-batched-bench line {line:?}: {e}"))?,
        );
    }
    if rows.is_empty() {
        return Err("llama-batched-bench printed no result line".into());
    }
    Ok(rows)
}

/// The row as a [`JobReport`] of side `llama.cpp` (wall = prompt + generation; model load not
/// counted, as on our side).
pub fn report(row: &BatchedBenchRow, precision: &str, peak_rss_bytes: Option<u64>) -> JobReport {
    let tokens = (row.pl * row.tg) as u64;
    JobReport {
        side: "llama.cpp".into(),
        job: "single".into(),
        device: "cpu".into(),
        precision: precision.into(),
        rows: row.pl,
        new_tokens: row.tg,
        prefix_tokens: vec![row.pp],
        rollouts: row.pl,
        tokens_generated: tokens,
        finish: [("length".to_string(), row.pl)].into_iter().collect(),
        wall_s: row.t,
        tokens_per_s: rate(tokens, row.t),
        peak_rss_bytes,
        note: Some(format!(
            "llama-batched-bench: random prompt ids of the same length, no sampling; prompt \
             {:.3} s, generation {:.3} s, {} threads",
            row.t_pp, row.t_tg, row.n_threads
        )),
        ..JobReport::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shape llama-batched-bench prints with --output-format jsonl (its log goes to stderr,
    // but a line of it on stdout must not break the parse).
    const OUTPUT: &str = "\
main: n_kv_max = 1376, n_batch = 2048, n_ubatch = 512, flash_attn = -1, is_pp_shared = 1\n\
\n\
{\"n_kv_max\": 1376, \"n_batch\": 2048, \"n_ubatch\": 512, \"flash_attn\": -1, \"is_pp_shared\": 1, \"n_gpu_layers\": -1, \"n_threads\": 2, \"n_threads_batch\": 2, \"pp\": 335, \"tg\": 64, \"pl\": 16, \"n_kv\": 1359, \"t_pp\": 0.412000, \"speed_pp\": 813.106812, \"t_tg\": 5.118000, \"speed_tg\": 200.078156, \"t\": 5.530000, \"speed\": 245.750458}\n\
\n";

    #[test]
    fn parses_the_jsonl_line_and_skips_the_log() {
        let rows = parse_output(OUTPUT).unwrap();
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(
            (r.pp, r.tg, r.pl, r.n_kv, r.n_threads),
            (335, 64, 16, 1359, 2)
        );
        assert_eq!(r.is_pp_shared, 1);
        assert!((r.t - 5.53).abs() < 1e-9 && (r.t_pp - 0.412).abs() < 1e-9);
    }

    #[test]
    fn no_result_line_is_an_error() {
        let err = parse_output("main: error: unable to load model\n").unwrap_err();
        assert!(err.contains("no result"), "{err}");
        assert!(parse_output("{\"t_tg\": oops}").is_err());
    }

    #[test]
    fn the_report_counts_rows_times_tokens_over_the_whole_time() {
        let row = &parse_output(OUTPUT).unwrap()[0];
        let r = report(row, "Q4_1 (ggml)", Some(300 << 20));
        assert_eq!(r.side, "llama.cpp");
        assert_eq!(r.job, "single");
        assert_eq!(r.tokens_generated, 1024);
        assert_eq!(r.prefix_tokens, vec![335]);
        assert!((r.tokens_per_s - 1024.0 / 5.53).abs() < 1e-9);
        assert_eq!(r.finish.get("length"), Some(&16));
        assert!(r.note.unwrap().contains("no sampling"));
    }

    #[test]
    fn args_ask_for_a_shared_prompt_in_unified_kv() {
        let a = args("m.gguf", 335, 16, 64, 2);
        let at = |flag: &str| a[a.iter().position(|x| x == flag).unwrap() + 1].clone();
        assert_eq!(at("-npp"), "335");
        assert_eq!(at("-npl"), "16");
        assert_eq!(at("-ntg"), "64");
        assert_eq!(at("-t"), "2");
        assert_eq!(at("-c"), (335 + 16 * 64 + 16).to_string());
        assert!(a.contains(&"-pps".to_string()) && a.contains(&"-kvu".to_string()));
    }
}
