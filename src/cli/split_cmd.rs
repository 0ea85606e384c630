//! `anchorscope split`: show what the splitter makes of a trace or a text file.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use anchorscope::config::Config;
use anchorscope::trace::split::{split_response, split_text, SplitOptions};
use anchorscope::trace::terminal::terminal_safe;
use anchorscope::trace::Sentence;

use super::load;
use super::output::{escape_newlines, print};
use super::SplitArgs;

/// One line of `split --json`.
#[derive(Debug, Serialize)]
struct Row<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    trace: Option<&'a str>,
    index: usize,
    start: usize,
    end: usize,
    text: &'a str,
}

/// Sentences of one source: a trace id (None for plain text) and its sentences.
type Group = (Option<String>, Vec<Sentence>);

pub fn run(args: &SplitArgs, config: &Config) -> anyhow::Result<()> {
    let opts = options(args, &config.split);
    let groups: Vec<Group> = if args.text {
        let text = read_text(&args.file)?;
        vec![(None, split_text(&text, &opts))]
    } else {
        let outcome = load::load(&args.file, &opts)?;
        load::warn_about(&outcome);
        load::select(outcome.traces, args.trace.as_deref())?
            .into_iter()
            // Split the raw response afresh so the flags above always take effect, even for
            // files that store their own sentence list.
            .map(|t| {
                let sentences = split_response(&t.trace.response, &opts);
                (Some(t.trace.id), sentences)
            })
            .collect()
    };
    let text = if args.json {
        render_json(&groups)?
    } else {
        render_text(&groups)
    };
    print(&text)
}

/// The config's splitter settings with the command-line overrides applied.
fn options(args: &SplitArgs, base: &SplitOptions) -> SplitOptions {
    let mut opts = base.clone();
    if let Some(n) = args.min_chars {
        opts.min_chars = n;
    }
    if args.no_blank_lines {
        opts.blank_line_breaks = false;
    }
    opts
}

/// A UTF-8 text file; a decoding error names the file and the byte where it fails.
fn read_text(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: byte {}: not valid UTF-8",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

fn render_text(groups: &[Group]) -> String {
    let mut out = String::new();
    let headed = groups.len() > 1;
    for (n, (id, sentences)) in groups.iter().enumerate() {
        if headed {
            if n > 0 {
                out.push('\n');
            }
            let _ = writeln!(
                out,
                "# {} ({} sentences)",
                id.as_deref().unwrap_or("text"),
                sentences.len()
            );
        }
        for (i, s) in sentences.iter().enumerate() {
            let _ = writeln!(
                out,
                "[{i}] {}..{}  {}",
                s.start,
                s.end,
                escape_newlines(&terminal_safe(&s.text))
            );
        }
    }
    out
}

fn render_json(groups: &[Group]) -> anyhow::Result<String> {
    let rows: Vec<Row> = groups
        .iter()
        .flat_map(|(id, sentences)| {
            sentences.iter().enumerate().map(move |(index, s)| Row {
                trace: id.as_deref(),
                index,
                start: s.start,
                end: s.end,
                text: &s.text,
            })
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&rows)?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentence(start: usize, end: usize, text: &str) -> Sentence {
        Sentence {
            start,
            end,
            text: text.into(),
        }
    }

    #[test]
    fn text_lines_have_index_range_and_escaped_text() {
        let groups = vec![(
            None,
            vec![sentence(0, 10, "One.\nTwo."), sentence(11, 20, "Three.")],
        )];
        assert_eq!(
            render_text(&groups),
            "[0] 0..10  One.\\nTwo.\n[1] 11..20  Three.\n"
        );
    }

    #[test]
    fn several_traces_get_headers() {
        let groups = vec![
            (Some("a".to_string()), vec![sentence(0, 3, "abc")]),
            (Some("b".to_string()), vec![]),
        ];
        let out = render_text(&groups);
        assert!(
            out.starts_with("# a (1 sentences)\n[0] 0..3  abc\n"),
            "{out}"
        );
        assert!(out.ends_with("\n# b (0 sentences)\n"), "{out}");
    }

    #[test]
    fn json_rows_carry_the_trace_id_only_for_traces() {
        let plain = render_json(&[(None, vec![sentence(2, 5, "xyz")])]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&plain).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{"index": 0, "start": 2, "end": 5, "text": "xyz"}])
        );
        let traced = render_json(&[(Some("t".into()), vec![sentence(2, 5, "xyz")])]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&traced).unwrap();
        assert_eq!(v[0]["trace"], "t");
    }

    #[test]
    fn flags_override_config() {
        let args = SplitArgs {
            file: "f".into(),
            text: true,
            min_chars: Some(3),
            no_blank_lines: true,
            trace: None,
            json: false,
        };
        let o = options(&args, &SplitOptions::default());
        assert_eq!(o.min_chars, 3);
        assert!(!o.blank_line_breaks);
    }

    #[test]
    fn invalid_utf8_names_file_and_byte() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bin.txt");
        std::fs::write(&p, b"ok \xff no").unwrap();
        let err = read_text(&p).unwrap_err().to_string();
        assert!(err.contains("bin.txt") && err.contains("byte 3"), "{err}");
    }
}
