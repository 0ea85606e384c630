//! Markdown report: the trace's provenance, prompt, output and one table of sentence metrics per
//! behavior. Undefined values read "n/a", never 0.

use std::fmt::Write;

use crate::analysis::{BehaviorAnalysis, TraceAnalysis};
use crate::loaded::LoadedTrace;

use super::format::{
    behavior_notes, direction_sign, fmt_diff, fmt_point, importance_name, manifest_lines, one_line,
    one_line_cut, rate_point, significance_mark,
};
use super::ExportOptions;

/// Longest sentence text in a table cell, in characters.
pub const CELL_CHARS: usize = 80;

/// Escape text for a Markdown table cell or paragraph: one line, pipes and Markdown punctuation
/// backslash-escaped, and `<`, `>`, `&` as entities so tags such as `<rejected/>` stay visible.
pub fn escape_inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in one_line(text).chars() {
        match c {
            '|' | '\\' | '`' | '*' | '_' | '[' | ']' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            _ => out.push(c),
        }
    }
    out
}

/// A block quote of multi-line text, each line escaped (blank lines kept as `>`).
fn quote_block(text: &str, out: &mut String) {
    for line in text.lines() {
        if line.trim().is_empty() {
            out.push_str(">\n");
        } else {
            let _ = writeln!(out, "> {}", escape_inline(line));
        }
    }
}

pub fn render(loaded: &LoadedTrace, analysis: &TraceAnalysis, opts: &ExportOptions) -> String {
    let t = &loaded.trace;
    let mut out = String::new();
    let _ = writeln!(out, "# Trace {}\n", escape_inline(&t.id));
    let _ = writeln!(
        out,
        "- Source: {} (`{}`)",
        t.source.label(),
        loaded.path.display().to_string().replace('`', "'")
    );
    let _ = writeln!(
        out,
        "- Model: {}",
        escape_inline(
            t.model
                .as_deref()
                .or(t.manifest.model.as_deref())
                .unwrap_or("unknown")
        )
    );
    for (k, v) in &t.meta {
        let _ = writeln!(out, "- {}: {}", escape_inline(k), escape_inline(v));
    }
    let _ = writeln!(out, "- Sentences: {}", t.sentences.len());
    let _ = writeln!(out, "- Rollouts stored: {}", loaded.rollouts.len());
    for (k, v) in manifest_lines(&t.manifest) {
        let _ = writeln!(out, "- {}: {}", escape_inline(&k), escape_inline(&v));
    }
    if let Some(note) = &t.manifest.note {
        let _ = writeln!(out, "- Note: {}", escape_inline(note));
    }
    let _ = writeln!(
        out,
        "\nSign convention: positive importance means the sentence pushes toward the behavior. \
         Colors and direction use the {}; intervals are 95% (Wilson for rates, Newcombe for \
         differences); `*` marks an interval that excludes 0.\n",
        importance_name(opts.importance)
    );

    let _ = writeln!(out, "## Prompt\n");
    let _ = writeln!(
        out,
        "<details><summary>{} message(s)</summary>\n",
        t.prompt.len()
    );
    for m in &t.prompt {
        let _ = writeln!(out, "**{}**\n", escape_inline(&m.role));
        quote_block(&m.content, &mut out);
        out.push('\n');
    }
    let _ = writeln!(out, "</details>\n");

    let _ = writeln!(out, "## Final output\n");
    let output = t.final_output();
    if output.is_empty() {
        let _ = writeln!(out, "_(no final output)_\n");
    } else {
        quote_block(output, &mut out);
        out.push('\n');
    }

    if let Some(pooled) = &analysis.pooled {
        let _ = writeln!(out, "> Runs: {pooled}\n");
    }
    for b in &analysis.behaviors {
        behavior_section(b, loaded, opts, &mut out);
    }
    out
}

fn behavior_section(
    b: &BehaviorAnalysis,
    loaded: &LoadedTrace,
    opts: &ExportOptions,
    out: &mut String,
) {
    let _ = writeln!(out, "## Behavior: {}\n", escape_inline(&b.behavior));
    for note in behavior_notes(b, &loaded.rollouts) {
        let _ = writeln!(out, "> {}\n", escape_inline(&note));
    }
    let _ = writeln!(
        out,
        "| # | sentence | rate without | rate with | Δ resampling | Δ counterfactual | dir | n | sig |"
    );
    let _ = writeln!(out, "|---:|---|---|---|---|---|:-:|---:|:-:|");
    for s in &b.sentences {
        let text = loaded
            .trace
            .sentences
            .get(s.index)
            .map(|x| x.text.as_str())
            .unwrap_or("");
        let chosen = s.importance(opts.importance);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.index,
            escape_inline(&one_line_cut(text, CELL_CHARS)),
            fmt_point(&rate_point(b, s.index)),
            fmt_point(&rate_point(b, s.index + 1)),
            fmt_diff(s.resampling),
            fmt_diff(s.counterfactual),
            match direction_sign(chosen) {
                "" => "n/a",
                sign => sign,
            },
            s.n,
            significance_mark(chosen),
        );
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::from_imported;
    use crate::export::fixture;
    use crate::trace::{ImportedMetrics, ImportedSentenceMetrics};

    #[test]
    fn tables_notes_and_escaping() {
        let (loaded, analysis) = fixture::loaded();
        let md = render(&loaded, &analysis, &ExportOptions::default());
        assert!(md.starts_with("# Trace t1\n"));
        assert!(md.contains("- Model: test-model"));
        assert!(md.contains("- tier: free"));
        assert!(
            md.contains("- classifiers: alignment\\_faking: af-rules@1"),
            "{md}"
        );
        assert!(md.contains("<details>"));
        // Prompt tags and pipes are escaped, output tag stays visible.
        assert!(
            md.contains("Write &lt;b&gt;bold&lt;/b&gt; \\| things"),
            "{md}"
        );
        assert!(
            md.contains("> &lt;request\\_fully\\_accepted/&gt; Here &amp; there."),
            "{md}"
        );
        assert!(md.contains("## Behavior: compliance"));
        assert!(md.contains("## Behavior: alignment\\_faking"));
        assert!(md.contains("rule-based offline AF judge"));
        // S_0: 1/4 → 4/4, Δcf = +0.75 significant.
        let row0 = md
            .lines()
            .find(|l| l.starts_with("| 0 | The user"))
            .unwrap();
        assert!(
            row0.contains("| 0.25 [0.05, 0.70] | 1.00 [0.51, 1.00] |"),
            "{row0}"
        );
        assert!(row0.ends_with("| + | 4 | * |"), "{row0}");
        // S_1 suppresses; pipe in S_2 escaped; S_2 has no counterfactual.
        let row1 = md.lines().find(|l| l.starts_with("| 1 |")).unwrap();
        assert!(row1.contains("-1.00 ["), "{row1}");
        assert!(row1.contains("| - | 4 |"), "{row1}");
        let row2 = md
            .lines()
            .find(|l| l.starts_with("| 2 | So \\| I'll"))
            .unwrap();
        assert!(row2.contains("| n/a | n/a | 2 |"), "{row2}");
        // Table rows: 3 per behavior.
        assert_eq!(
            md.lines()
                .filter(|l| l.starts_with("| ") && !l.starts_with("| #"))
                .count(),
            6
        );
    }

    #[test]
    fn imported_metrics_are_noted_and_long_text_truncated() {
        let long = "word ".repeat(40);
        let mut t = fixture::trace(&long, &[long.trim()]);
        t.imported.push(ImportedMetrics {
            behavior: "accuracy".into(),
            note: "Thought Anchors counterfactual sign flipped to ours".into(),
            notes: vec![],
            sentences: vec![ImportedSentenceMetrics {
                rate: Some(0.4),
                counterfactual_importance: Some(-0.2),
                ..Default::default()
            }],
        });
        let analysis = TraceAnalysis {
            behaviors: vec![from_imported(1, &t.imported[0])],
            rule: Default::default(),
            pooled: None,
        };
        let (mut loaded, _) = fixture::loaded();
        loaded.trace = t;
        loaded.rollouts.clear();
        let md = render(&loaded, &analysis, &ExportOptions::default());
        assert!(md.contains("Imported metrics"), "{md}");
        assert!(md.contains("sign flipped to ours"));
        let row = md.lines().find(|l| l.starts_with("| 0 |")).unwrap();
        assert!(row.contains("word word…"), "{row}");
        assert!(
            row.contains("| 0.40 | n/a | n/a | -0.20 | - | 0 |"),
            "{row}"
        );
    }
}
