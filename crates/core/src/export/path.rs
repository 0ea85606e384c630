//! Default export file names: the trace file's stem, or its id when the file holds several
//! traces, and never the input itself.

use std::path::{Path, PathBuf};

use super::ExportFormat;

/// `dir/<name>.<ext>`: the trace file's stem when the file is that one trace, else the trace id
/// made file-safe (a JSONL file or a folder holds many). Never the input itself: exporting
/// `t.json` as JSON next to it gives `t.export.json`. An empty `dir` gives a path relative to
/// the current directory.
pub fn default_file(
    trace_path: &Path,
    trace_id: &str,
    several: bool,
    format: ExportFormat,
    dir: &Path,
) -> PathBuf {
    let stem = match trace_path.file_stem() {
        Some(s) if !several && trace_path.is_file() => s.to_string_lossy().into_owned(),
        _ => file_safe(trace_id),
    };
    let ext = format.extension();
    let plain = dir.join(format!("{stem}.{ext}"));
    if same_file(&plain, trace_path) {
        dir.join(format!("{stem}.export.{ext}"))
    } else {
        plain
    }
}

/// A trace id made safe as a file name (ids may contain `/` or `:`).
pub fn file_safe(id: &str) -> String {
    let s: String = id
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let s = s.trim_matches('.').to_string();
    if s.is_empty() {
        "trace".into()
    } else {
        s
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_safe_file_names() {
        assert_eq!(file_safe("a/b:c d"), "a_b_c_d");
        assert_eq!(file_safe(".."), "trace");
        assert_eq!(file_safe("ok-1.2"), "ok-1.2");
    }

    #[test]
    fn default_name_from_stem_or_id() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("my-trace.json");
        std::fs::write(&file, "{}").unwrap();
        let out = Path::new("/nonexistent");
        assert_eq!(
            default_file(&file, "id/1", false, ExportFormat::Html, out),
            out.join("my-trace.html")
        );
        assert_eq!(
            default_file(&file, "id/1", true, ExportFormat::Csv, out),
            out.join("id_1.csv")
        );
    }

    #[test]
    fn never_defaults_to_overwriting_the_input() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.json");
        std::fs::write(&file, "{}").unwrap();
        assert_eq!(
            default_file(&file, "x", false, ExportFormat::Json, dir.path()),
            dir.path().join("t.export.json")
        );
        assert_eq!(
            default_file(&file, "x", false, ExportFormat::Markdown, dir.path()),
            dir.path().join("t.md")
        );
    }
}
