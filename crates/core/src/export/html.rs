//! A self-contained HTML page (inline CSS, no scripts, no external assets): the reasoning with
//! every sentence colored by direction for each behavior, the rate chart as inline SVG, a table of
//! sentence metrics, the prompt and the final output. All text is escaped.

use std::fmt::Write;

use crate::analysis::{BehaviorAnalysis, Direction, Shade, ShadeRule, TraceAnalysis};
use crate::loaded::LoadedTrace;

use super::format::{
    behavior_notes, direction_sign, escape_html as esc, fmt_diff, fmt_point, importance_name,
    manifest_lines, rate_point, significance_mark,
};
use super::{svg, ExportOptions};

/// Orange: the sentence promotes the behavior.
pub const PROMOTES_RGB: (u8, u8, u8) = (230, 120, 20);
/// Purple: the sentence suppresses the behavior.
pub const SUPPRESSES_RGB: (u8, u8, u8) = (130, 60, 200);

const CSS: &str = "
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222;background:#fff;line-height:1.5}
h1{font-size:1.5em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
.meta{color:#555}.meta dt{font-weight:600;float:left;clear:left;width:9em}.meta dd{margin-left:9em}
.note{background:#f6f6f6;border-left:4px solid #bbb;padding:.4em .8em;margin:.6em 0}
.reasoning,.output,.prompt pre{white-space:pre-wrap;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em;background:#fafafa;border:1px solid #eee;padding:.8em}
.s{border-radius:3px;padding:0 1px}
.s.undef{background:rgba(128,128,128,0.12);border-bottom:1px dotted #999}
.gap{color:#aaa}
.legend span{padding:0 .4em;margin-right:.6em;border-radius:3px}
table{border-collapse:collapse;font-size:.85em;width:100%}th,td{border:1px solid #ddd;padding:.2em .4em;vertical-align:top}
th{background:#f0f0f0}td.num{text-align:right;white-space:nowrap}
";

/// The background color of a sentence span from its [`Shade`]: orange / purple, with alpha
/// by the absolute level when significant (0.35, 0.55, 0.8) and a faint 0.15 otherwise; a
/// transparent span for |Δ| below the first step; gray when exactly 0; `None` when undefined
/// or resting on too few rollouts.
pub fn sentence_background(shade: Shade) -> Option<String> {
    let dir = shade.direction?;
    let (r, g, b) = match dir {
        Direction::Promotes => PROMOTES_RGB,
        Direction::Suppresses => SUPPRESSES_RGB,
        Direction::Neutral => return Some("rgba(128,128,128,0.25)".into()),
    };
    let alpha = match (shade.strong, shade.level) {
        (_, 0) => 0.0,
        (false, _) => 0.15,
        (true, 1) => 0.35,
        (true, 2) => 0.55,
        (true, _) => 0.8,
    };
    Some(format!("rgba({r},{g},{b},{alpha:.2})"))
}

pub fn render(loaded: &LoadedTrace, analysis: &TraceAnalysis, opts: &ExportOptions) -> String {
    let t = &loaded.trace;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>anchorscope: {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        esc(&t.id)
    );
    let _ = writeln!(h, "<h1>Trace {}</h1>", esc(&t.id));
    let _ = writeln!(h, "<dl class=\"meta\">");
    let mut meta = |k: &str, v: &str| {
        let _ = writeln!(h, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
    };
    meta(
        "source",
        &format!("{} ({})", t.source.label(), loaded.path.display()),
    );
    meta(
        "model",
        t.model
            .as_deref()
            .or(t.manifest.model.as_deref())
            .unwrap_or("unknown"),
    );
    for (k, v) in &t.meta {
        meta(k, v);
    }
    meta("sentences", &t.sentences.len().to_string());
    meta("rollouts stored", &loaded.rollouts.len().to_string());
    for (k, v) in manifest_lines(&t.manifest) {
        meta(&k, &v);
    }
    if let Some(note) = &t.manifest.note {
        meta("note", note);
    }
    let _ = writeln!(h, "</dl>");
    let (pr, pg, pb) = PROMOTES_RGB;
    let (sr, sg, sb) = SUPPRESSES_RGB;
    let _ = writeln!(
        h,
        "<p class=\"legend\">Sentences are colored by the {}: <span style=\"background:rgba({pr},{pg},{pb},0.6)\">promotes the behavior</span><span style=\"background:rgba({sr},{sg},{sb},0.6)\">suppresses it</span><span class=\"s undef\">undefined</span> — stronger color, larger magnitude (relative to the largest in the trace). Positive importance pushes toward the behavior. Hover a sentence for its numbers.</p>",
        esc(importance_name(opts.importance))
    );

    let _ = writeln!(h, "<h2>Rate by position</h2>");
    let refs: Vec<&BehaviorAnalysis> = analysis.behaviors.iter().collect();
    if refs.is_empty() {
        let _ = writeln!(
            h,
            "<p>No behavior has labels or imported metrics for this trace yet.</p>"
        );
    } else {
        h.push_str(&svg::rate_chart(&refs));
        h.push('\n');
    }

    if let Some(pooled) = &analysis.pooled {
        let _ = writeln!(h, "<p class=\"note\">Runs: {}</p>", esc(pooled));
    }
    for b in &analysis.behaviors {
        behavior_section(b, loaded, opts, &analysis.rule, &mut h);
    }

    let _ = writeln!(h, "<h2>Final output</h2>");
    let output = t.final_output();
    let _ = writeln!(
        h,
        "<div class=\"output\">{}</div>",
        if output.is_empty() {
            "(no final output)".to_string()
        } else {
            esc(output)
        }
    );
    let _ = writeln!(
        h,
        "<h2>Prompt</h2>\n<details class=\"prompt\"><summary>{} message(s)</summary>",
        t.prompt.len()
    );
    for m in &t.prompt {
        let _ = writeln!(h, "<h3>{}</h3><pre>{}</pre>", esc(&m.role), esc(&m.content));
    }
    let _ = writeln!(h, "</details>\n</body>\n</html>");
    h
}

fn behavior_section(
    b: &BehaviorAnalysis,
    loaded: &LoadedTrace,
    opts: &ExportOptions,
    rule: &ShadeRule,
    h: &mut String,
) {
    let t = &loaded.trace;
    let _ = writeln!(
        h,
        "<section class=\"behavior\" id=\"b-{id}\">\n<h2>Behavior: {id}</h2>",
        id = esc(&b.behavior)
    );
    for note in behavior_notes(b, &loaded.rollouts) {
        let _ = writeln!(h, "<p class=\"note\">{}</p>", esc(&note));
    }
    h.push_str("<div class=\"reasoning\">");
    let mut prev_end = t.sentences.first().map_or(0, |s| s.start);
    for (i, s) in t.sentences.iter().enumerate() {
        // Text between sentences (whitespace, tags) is shown dimmed; bad ranges fall back to the
        // stored sentence text instead of panicking.
        if let Some(gap) = t.response.get(prev_end..s.start) {
            if !gap.is_empty() {
                let _ = write!(h, "<span class=\"gap\">{}</span>", esc(gap));
            }
        }
        let text = t.response.get(s.range()).unwrap_or(&s.text);
        prev_end = s.end.max(prev_end);
        let m = b.sentences.get(i);
        let imp = m.and_then(|m| m.importance(opts.importance));
        let title = match m {
            Some(m) => format!(
                "S{i} · {}: {} · Δ resampling {} · Δ counterfactual {} · rate without {} · with {} · n = {}{}",
                importance_name(opts.importance),
                fmt_diff(imp),
                fmt_diff(m.resampling),
                fmt_diff(m.counterfactual),
                fmt_point(&rate_point(b, i)),
                fmt_point(&rate_point(b, i + 1)),
                m.n,
                if significance_mark(imp).is_empty() { "" } else { " · significant" }
            ),
            None => format!("S{i} · no metrics"),
        };
        match sentence_background(b.shade(i, opts.importance, rule)) {
            Some(bg) => {
                let _ = write!(
                    h,
                    "<span class=\"s\" data-i=\"{i}\" style=\"background:{bg}\" title=\"{}\">{}</span>",
                    esc(&title),
                    esc(text)
                );
            }
            None => {
                let _ = write!(
                    h,
                    "<span class=\"s undef\" data-i=\"{i}\" title=\"{}\">{}</span>",
                    esc(&title),
                    esc(text)
                );
            }
        }
    }
    if t.sentences.is_empty() {
        h.push_str("(no sentences)");
    }
    h.push_str("</div>\n");

    let _ = writeln!(
        h,
        "<table>\n<thead><tr><th>#</th><th>sentence</th><th>rate without</th><th>rate with</th><th>Δ resampling</th><th>Δ counterfactual</th><th>dir</th><th>n</th><th>sig</th><th>KL</th><th>different</th><th>overdetermined</th></tr></thead>\n<tbody>"
    );
    for m in &b.sentences {
        let text = t.sentences.get(m.index).map_or("", |s| s.text.as_str());
        let imp = m.importance(opts.importance);
        let opt = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |x| format!("{x:.3}"));
        let _ = writeln!(
            h,
            "<tr><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            m.index,
            esc(text),
            fmt_point(&rate_point(b, m.index)),
            fmt_point(&rate_point(b, m.index + 1)),
            fmt_diff(m.resampling),
            fmt_diff(m.counterfactual),
            match direction_sign(imp) { "" => "n/a", s => s },
            m.n,
            significance_mark(imp),
            opt(m.kl),
            opt(m.different_fraction),
            opt(m.overdeterminedness),
        );
    }
    let _ = writeln!(h, "</tbody>\n</table>\n</section>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::fixture;

    fn section<'a>(html: &'a str, behavior: &str) -> &'a str {
        let start = html.find(&format!("id=\"b-{behavior}\"")).unwrap();
        let end = html[start..].find("</section>").unwrap() + start;
        &html[start..end]
    }

    #[test]
    fn self_contained_escaped_and_colored() {
        let (loaded, analysis) = fixture::loaded();
        let html = render(&loaded, &analysis, &ExportOptions::default());
        assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
        assert!(html.contains("<svg"));
        assert!(
            !html.contains("<script"),
            "the sentence's <script> must be escaped"
        );
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
        assert!(html.contains("&lt;request_fully_accepted/&gt; Here &amp; there."));

        let c = section(&html, "compliance");
        assert_eq!(c.matches("class=\"s").count(), 3, "one span per sentence");
        // With the default minimum of 5 valid rollouts a side, 4 rollouts color nothing.
        assert_eq!(c.matches("class=\"s undef\"").count(), 3, "{c}");
        // With a minimum of 1: S_0 promotes (+0.75, significant: top level, alpha .8), S_1
        // suppresses (−1, significant), S_2 undefined.
        let mut analysis = analysis.clone();
        analysis.rule.min_n = 1;
        let html = render(&loaded, &analysis, &ExportOptions::default());
        let c = section(&html, "compliance");
        assert!(
            c.contains("data-i=\"0\" style=\"background:rgba(230,120,20,0.80)\""),
            "{c}"
        );
        assert!(
            c.contains("data-i=\"1\" style=\"background:rgba(130,60,200,0.80)\""),
            "{c}"
        );
        assert!(c.contains("class=\"s undef\" data-i=\"2\""), "{c}");
        assert!(c.contains("title=\"S0 · counterfactual importance: +0.75 ["));
        assert!(c.contains("&quot;fully&quot;"));

        let a = section(&html, "alignment_faking");
        assert_eq!(a.matches("class=\"s undef\"").count(), 3);
        assert!(a.contains("rule-based offline AF judge"));
    }

    #[test]
    fn bad_ranges_do_not_panic() {
        let (mut loaded, analysis) = fixture::loaded();
        loaded.trace.sentences[1].end = 10_000;
        let html = render(&loaded, &analysis, &ExportOptions::default());
        assert!(html.contains("data-i=\"1\""));
    }

    #[test]
    fn imported_metrics_color_without_intervals() {
        let (mut loaded, _) = fixture::loaded();
        loaded.rollouts.clear();
        let imported = crate::trace::ImportedMetrics {
            behavior: "accuracy".into(),
            note: "sign converted".into(),
            notes: vec![],
            sentences: vec![
                crate::trace::ImportedSentenceMetrics {
                    rate: Some(0.5),
                    counterfactual_importance: Some(0.4),
                    ..Default::default()
                },
                crate::trace::ImportedSentenceMetrics {
                    rate: Some(0.9),
                    counterfactual_importance: Some(-0.2),
                    ..Default::default()
                },
            ],
        };
        let analysis = TraceAnalysis {
            behaviors: vec![crate::analysis::from_imported(3, &imported)],
            rule: Default::default(),
            pooled: None,
        };
        let html = render(&loaded, &analysis, &ExportOptions::default());
        let a = section(&html, "accuracy");
        assert!(a.contains("Imported metrics") && a.contains("sign converted"));
        // No interval: faint whatever the size.
        assert!(a.contains("data-i=\"0\" style=\"background:rgba(230,120,20,0.15)\""));
        assert!(a.contains("data-i=\"1\" style=\"background:rgba(130,60,200,0.15)\""));
        assert!(a.contains("class=\"s undef\" data-i=\"2\""));
        // Imported rates have no counts: a line, no band.
        assert!(html.contains("<polyline") && !html.contains("class=\"band\""));
    }

    #[test]
    fn neutral_is_gray() {
        let shade = |direction, level, strong| Shade {
            direction,
            level,
            strong,
        };
        assert_eq!(
            sentence_background(shade(Some(Direction::Neutral), 0, false)).unwrap(),
            "rgba(128,128,128,0.25)"
        );
        assert_eq!(sentence_background(Shade::NONE), None);
        // Faint whatever the size unless significant; strong by absolute level.
        let faint = sentence_background(shade(Some(Direction::Promotes), 3, false)).unwrap();
        let strong = sentence_background(shade(Some(Direction::Promotes), 3, true)).unwrap();
        assert!(
            faint.ends_with("0.15)") && strong.ends_with("0.80)"),
            "{faint} {strong}"
        );
    }
}
