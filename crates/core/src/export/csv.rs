//! Per-sentence metrics as CSV (RFC 4180): one row per behavior × sentence, empty fields where a
//! value is undefined. Numbers are written at full precision for machines.

use crate::analysis::significance::is_significant;
use crate::analysis::{
    BehaviorAnalysis, Difference, ImportanceKind, Interval, MetricSource, ShadeRule, THEIRS_SUFFIX,
};
use crate::trace::Trace;

use super::format::rate_point;

/// The header row. `significant` refers to the counterfactual importance (the default shown),
/// under the analysis's rule (per-sentence 95% interval or FDR). `kl_definition` says which KL
/// the `kl` column holds: ours, KL(P_D ‖ P_kept) over yes/no outcomes, or the source's own.
pub const HEADER: [&str; 35] = [
    "behavior",
    "index",
    "start",
    "end",
    "text",
    "n",
    "rate_without",
    "rate_without_lo",
    "rate_without_hi",
    "rate_with",
    "rate_with_lo",
    "rate_with_hi",
    "rate_different",
    "rate_different_lo",
    "rate_different_hi",
    "resampling",
    "resampling_lo",
    "resampling_hi",
    "counterfactual",
    "cf_lo",
    "cf_hi",
    "significant",
    "p_counterfactual",
    "q_counterfactual",
    "p_resampling",
    "q_resampling",
    "invalid_without",
    "invalid_with",
    "kl",
    "kl_definition",
    "different_fraction",
    "overdeterminedness",
    "tags",
    "source",
    "runs_pooled",
];

/// Neutralise a text cell a spreadsheet would run as a formula (OWASP "CSV injection"): a cell
/// starting with `=`, `+`, `-`, `@`, tab or CR gets a leading `'`. Only text cells go through
/// this; numeric columns keep their sign (`-0.12` must stay a number).
pub fn text_cell(field: &str) -> String {
    if field.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{field}")
    } else {
        field.to_string()
    }
}

/// Quote a field when it holds a comma, a quote, CR or LF; double inner quotes.
pub fn quote_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

fn num(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

fn interval(i: Option<Interval>) -> [String; 2] {
    [num(i.map(|i| i.lo)), num(i.map(|i| i.hi))]
}

fn diff(d: Option<Difference>) -> [String; 3] {
    let [lo, hi] = interval(d.and_then(|d| d.interval));
    [num(d.map(|d| d.value)), lo, hi]
}

fn rows(
    b: &BehaviorAnalysis,
    trace: &Trace,
    rule: &ShadeRule,
    pooled: Option<&str>,
    out: &mut String,
) {
    let kl_definition = match b.source {
        MetricSource::Rollouts => "ours: KL(P_D || P_kept), yes/no outcomes",
        MetricSource::Imported { .. } => "theirs: source's answer-distribution KL",
    };
    let base = b
        .behavior
        .strip_suffix(THEIRS_SUFFIX)
        .unwrap_or(&b.behavior);
    let tags_of = |i: usize| {
        trace
            .imported
            .iter()
            .find(|m| m.behavior == base)
            .or_else(|| trace.imported.first())
            .and_then(|m| m.sentences.get(i))
            .map(|m| m.tags.join(";"))
            .unwrap_or_default()
    };
    let source = match b.source {
        MetricSource::Rollouts => "rollouts",
        MetricSource::Imported { .. } => "imported",
    };
    for s in &b.sentences {
        let sentence = trace.sentences.get(s.index);
        let without = rate_point(b, s.index);
        let with = rate_point(b, s.index + 1);
        let (different, different_ci) = match b.source {
            MetricSource::Rollouts => (s.rate_different.value(), s.rate_different.wilson()),
            MetricSource::Imported { .. } => (None, None),
        };
        let mut fields: Vec<String> = vec![
            text_cell(&b.behavior),
            s.index.to_string(),
            sentence.map(|x| x.start.to_string()).unwrap_or_default(),
            sentence.map(|x| x.end.to_string()).unwrap_or_default(),
            sentence.map(|x| text_cell(&x.text)).unwrap_or_default(),
            s.n.to_string(),
            num(without.value),
        ];
        fields.extend(interval(without.interval));
        fields.push(num(with.value));
        fields.extend(interval(with.interval));
        fields.push(num(different));
        fields.extend(interval(different_ci));
        fields.extend(diff(s.resampling));
        fields.extend(diff(s.counterfactual));
        fields.push(
            s.counterfactual
                .map(|_| is_significant(s, ImportanceKind::Counterfactual, rule).to_string())
                .unwrap_or_default(),
        );
        fields.push(num(s.p_counterfactual));
        fields.push(num(s.q_counterfactual));
        fields.push(num(s.p_resampling));
        fields.push(num(s.q_resampling));
        for position in [s.index, s.index + 1] {
            fields.push(
                b.invalid
                    .get(position)
                    .map(u32::to_string)
                    .unwrap_or_default(),
            );
        }
        fields.push(num(s.kl));
        fields.push(kl_definition.to_string());
        fields.push(num(s.different_fraction));
        fields.push(num(s.overdeterminedness));
        fields.push(text_cell(&tags_of(s.index)));
        fields.push(source.to_string());
        fields.push(text_cell(pooled.unwrap_or("")));
        let line: Vec<String> = fields.iter().map(|f| quote_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
}

/// The CSV text: header, then each behavior's sentences in order. Lines end with CRLF (RFC 4180).
pub fn render(analysis: &crate::analysis::TraceAnalysis, trace: &Trace) -> String {
    let mut out = HEADER.join(",");
    out.push_str("\r\n");
    for b in &analysis.behaviors {
        rows(
            b,
            trace,
            &analysis.rule,
            analysis.pooled.as_deref(),
            &mut out,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::fixture;

    /// A minimal RFC 4180 reader, enough to check what we write.
    fn parse(text: &str) -> Vec<Vec<String>> {
        let mut rows = vec![];
        let mut row = vec![];
        let mut field = String::new();
        let mut quoted = false;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                (true, '"') => quoted = false,
                (true, c) => field.push(c),
                (false, '"') => quoted = true,
                (false, ',') => row.push(std::mem::take(&mut field)),
                (false, '\r') => {}
                (false, '\n') => {
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                (false, c) => field.push(c),
            }
        }
        rows
    }

    #[test]
    fn formula_cells_are_neutralised_but_numbers_are_not() {
        for bad in ["=1+1", "+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
            assert!(text_cell(bad).starts_with('\''), "{bad:?}");
        }
        assert_eq!(text_cell("I will comply."), "I will comply.");
        let mut t = fixture::loaded().0.trace;
        t.sentences[0].text = "=HYPERLINK(\"http://x\")".into();
        let (_, analysis) = fixture::loaded();
        let rows = parse(&render(&analysis, &t));
        let col = |name: &str| HEADER.iter().position(|h| *h == name).unwrap();
        assert_eq!(rows[1][col("text")], "'=HYPERLINK(\"http://x\")");
        // A negative importance stays a number.
        assert_eq!(rows[2][col("counterfactual")], "-1");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_field("plain"), "plain");
        assert_eq!(quote_field("a,b"), "\"a,b\"");
        assert_eq!(quote_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(quote_field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn one_row_per_behavior_and_sentence_and_parses_back() {
        let (loaded, analysis) = fixture::loaded();
        let rows = parse(&render(&analysis, &loaded.trace));
        assert_eq!(rows.len(), 2 * 3 + 1);
        assert_eq!(rows[0], HEADER.to_vec());
        assert!(rows.iter().all(|r| r.len() == HEADER.len()));
        let col = |name: &str| HEADER.iter().position(|h| *h == name).unwrap();
        // compliance S_1: text with quote and comma survives; Δcf = −1 is significant.
        let r = &rows[2];
        assert_eq!(r[col("text")], loaded.trace.sentences[1].text);
        assert_eq!(r[col("counterfactual")], "-1");
        assert_eq!(r[col("significant")], "true");
        assert_eq!(r[col("rate_without")], "1");
        assert_eq!(r[col("rate_with")], "0");
        // compliance S_2: counterfactual undefined → empty, not 0.
        assert_eq!(rows[3][col("counterfactual")], "");
        assert_eq!(rows[3][col("significant")], "");
        // alignment_faking S_0: no rollouts at 0 or 1 → empty rates.
        assert_eq!(rows[4][col("behavior")], "alignment_faking");
        assert_eq!(rows[4][col("rate_without")], "");
        assert_eq!(rows[4][col("source")], "rollouts");
        assert_eq!(rows[4][col("runs_pooled")], "", "not pooled by the caller");
        let mut pooled = analysis.clone();
        pooled.pooled = Some("pooled runs: 1 of 2 (1 excluded: other model)".into());
        let rows = parse(&render(&pooled, &loaded.trace));
        assert_eq!(
            rows[1][col("runs_pooled")],
            "pooled runs: 1 of 2 (1 excluded: other model)"
        );
    }
}
