//! The rate chart (the post's Figure 1) as inline SVG: each behavior's rate by position 0..=n as
//! a line, its Wilson band as a shaded polygon, gaps where the rate is undefined.

use std::fmt::Write;

use crate::analysis::BehaviorAnalysis;

use super::format::{escape_html, position_count, rate_point, truncate_chars};

/// Series colors (distinct from the orange/purple used for sentence direction).
pub const SERIES_COLORS: [(u8, u8, u8); 5] = [
    (31, 119, 180),
    (44, 160, 44),
    (214, 39, 40),
    (140, 86, 75),
    (23, 190, 207),
];

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 48.0;
/// Room on the right for the legend, so it never covers the data.
const RIGHT: f64 = 160.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 40.0;

/// Runs of consecutive positions where `defined(p)` holds.
fn runs(count: usize, defined: impl Fn(usize) -> bool) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut current = Vec::new();
    for p in 0..count {
        if defined(p) {
            current.push(p);
        } else if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// An SVG chart of every behavior's rate by position, with a legend.
pub fn rate_chart(behaviors: &[&BehaviorAnalysis]) -> String {
    let positions = behaviors
        .iter()
        .map(|b| position_count(b))
        .max()
        .unwrap_or(1);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |p: usize| {
        let span = positions.saturating_sub(1).max(1) as f64;
        LEFT + plot_w * p as f64 / span
    };
    let y = |v: f64| TOP + plot_h * (1.0 - v.clamp(0.0, 1.0));

    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="rate by position"><title>Rate of each behavior by position (0 = all sentences resampled, {n} = whole reasoning kept), 95% Wilson band</title>"#,
        n = positions - 1
    );
    // Axes, gridlines at 0, 0.5, 1 and position ticks.
    for v in [0.0, 0.5, 1.0] {
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{x2}" y2="{y:.1}" stroke="#bbb" stroke-width="0.5"/><text x="{tx}" y="{ty:.1}" font-size="11" text-anchor="end">{v:.1}</text>"##,
            y = y(v),
            x2 = WIDTH - RIGHT,
            tx = LEFT - 6.0,
            ty = y(v) + 4.0
        );
    }
    let _ = write!(
        s,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{yb}" stroke="#444"/><line x1="{LEFT}" y1="{yb}" x2="{xr}" y2="{yb}" stroke="#444"/>"##,
        yb = HEIGHT - BOTTOM,
        xr = WIDTH - RIGHT
    );
    let step = (positions / 10).max(1);
    let ticks: std::collections::BTreeSet<usize> = (0..positions)
        .step_by(step)
        .chain(std::iter::once(positions - 1))
        .collect();
    for p in ticks {
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{}" font-size="11" text-anchor="middle">{p}</text>"##,
            x(p),
            HEIGHT - BOTTOM + 14.0
        );
    }
    let _ = write!(
        s,
        r##"<text x="{:.1}" y="{}" font-size="12" text-anchor="middle">position (sentences kept)</text><text x="12" y="{:.1}" font-size="12" text-anchor="middle" transform="rotate(-90 12 {:.1})">rate</text>"##,
        LEFT + plot_w / 2.0,
        HEIGHT - 6.0,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );

    for (i, b) in behaviors.iter().enumerate() {
        let (r, g, bl) = SERIES_COLORS[i % SERIES_COLORS.len()];
        let count = position_count(b);
        let points: Vec<_> = (0..count).map(|p| rate_point(b, p)).collect();
        let name = escape_html(&b.behavior);
        let _ = write!(s, r#"<g class="series" data-behavior="{name}">"#);
        for run in runs(count, |p| points[p].interval.is_some()) {
            let upper = run
                .iter()
                .filter_map(|&p| points[p].interval.map(|iv| (p, iv.hi)));
            let lower = run
                .iter()
                .rev()
                .filter_map(|&p| points[p].interval.map(|iv| (p, iv.lo)));
            let pts: Vec<String> = upper
                .chain(lower)
                .map(|(p, v)| format!("{:.1},{:.1}", x(p), y(v)))
                .collect();
            let _ = write!(
                s,
                r#"<polygon class="band" points="{}" fill="rgba({r},{g},{bl},0.18)" stroke="none"/>"#,
                pts.join(" ")
            );
        }
        for run in runs(count, |p| points[p].value.is_some()) {
            let pts: Vec<String> = run
                .iter()
                .filter_map(|&p| points[p].value.map(|v| format!("{:.1},{:.1}", x(p), y(v))))
                .collect();
            if run.len() == 1 {
                let (px, py) = pts[0].split_once(',').unwrap_or(("0", "0"));
                let _ = write!(
                    s,
                    r#"<circle class="rate" cx="{px}" cy="{py}" r="3" fill="rgb({r},{g},{bl})"/>"#
                );
            } else {
                let _ = write!(
                    s,
                    r#"<polyline class="rate" points="{}" fill="none" stroke="rgb({r},{g},{bl})" stroke-width="2"/>"#,
                    pts.join(" ")
                );
            }
        }
        let ly = TOP + 4.0 + 14.0 * i as f64;
        let _ = write!(
            s,
            r#"<rect x="{lx}" y="{ly}" width="10" height="10" fill="rgb({r},{g},{bl})"/><text x="{tx}" y="{ty}" font-size="11">{label}</text></g>"#,
            lx = WIDTH - RIGHT + 12.0,
            tx = WIDTH - RIGHT + 26.0,
            ty = ly + 9.0,
            label = escape_html(&truncate_chars(&b.behavior, 22)),
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::fixture;

    #[test]
    fn gaps_where_undefined_and_one_band_per_run() {
        let (_, analysis) = fixture::loaded();
        let svg = rate_chart(&analysis.behaviors.iter().collect::<Vec<_>>());
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        // compliance is defined at all 4 positions: one line, one band.
        // alignment_faking only at position 3: a dot and a single-point band.
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 1);
        assert_eq!(svg.matches("class=\"band\"").count(), 2);
        assert!(svg.contains(">position (sentences kept)<") && svg.contains(">rate<"));
        assert!(svg.contains(">alignment_faking<"));
        // Position ticks 0..=3, each once.
        assert_eq!(svg.matches("text-anchor=\"middle\">3</text>").count(), 1);
    }

    #[test]
    fn runs_split_at_gaps() {
        let defined = [true, true, false, true, false, false, true];
        assert_eq!(runs(7, |p| defined[p]), vec![vec![0, 1], vec![3], vec![6]]);
        assert!(runs(0, |_| true).is_empty());
    }
}
