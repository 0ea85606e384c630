//! Persistence: the append-only rollout store (JSONL beside the trace), atomic writes.
//!
//! Rollouts are data that cost model time, so the store is append-only: one JSON line per
//! rollout, synced to disk before `append` returns. A crash can at worst leave a partial last
//! line; reading skips it with a warning, and reopening for append cuts it off first so new
//! lines never glue onto it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::trace::import::ImportError;
use crate::trace::{Rollout, Trace};

pub mod runs;

/// The rollout store of a trace file: `NAME.rollouts.jsonl` beside `NAME.json` (for a folder,
/// `anchorscope.rollouts.jsonl` inside it).
pub fn store_path_for(trace_path: &Path) -> PathBuf {
    if trace_path.is_dir() {
        return trace_path.join("anchorscope.rollouts.jsonl");
    }
    let stem = trace_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "trace".into());
    trace_path.with_file_name(format!("{stem}.rollouts.jsonl"))
}

/// The store of one trace among several in a single file (JSONL, a JSON array):
/// `NAME.<id>.rollouts.jsonl` beside the file, with the id reduced to `[A-Za-z0-9._-]`.
pub fn store_path_for_member(trace_path: &Path, trace_id: &str) -> PathBuf {
    let stem = trace_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "trace".into());
    let safe: String = trace_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    trace_path.with_file_name(format!("{stem}.{safe}.rollouts.jsonl"))
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Write `bytes` to `path` atomically: a temp file in the same directory, fsync, rename.
/// Readers see the old file or the new one, never a half-written one; on error the temp file
/// is removed.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let unique = format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let temp = dir.join(unique);
    let result = write_then_rename(&temp, path, bytes);
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result?;
    // Make the rename itself durable where directories can be synced (best effort).
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn write_then_rename(temp: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(temp, path)
}

/// Save a trace in the native format (pretty JSON), atomically.
pub fn save_trace(path: &Path, trace: &Trace) -> io::Result<()> {
    let mut text = serde_json::to_string_pretty(trace).map_err(io::Error::other)?;
    text.push('\n');
    atomic_write(path, text.as_bytes())
}

/// Append-only writer: every rollout is one JSON line, synced before `append` returns.
pub struct RolloutWriter {
    path: PathBuf,
    file: File,
}

impl RolloutWriter {
    /// Open (creating if needed) the store at `path` for appending. A partial last line left by
    /// a crash is cut off first (it could not be read anyway); a complete last line that only
    /// lacks its newline gets one.
    pub fn open(path: &Path) -> io::Result<Self> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        repair_tail(&mut file)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn append(&mut self, rollout: &Rollout) -> io::Result<()> {
        let mut line = serde_json::to_string(rollout).map_err(io::Error::other)?;
        line.push('\n');
        // One write call per line so a crash leaves at most one partial line.
        self.file.write_all(line.as_bytes())?;
        self.file.flush()?;
        self.file.sync_data()
    }
}

/// Make the file end with a complete line (see [`RolloutWriter::open`]).
fn repair_tail(file: &mut File) -> io::Result<()> {
    // The whole store is read on every load anyway, so reading it here costs no more.
    let mut content = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut content)?;
    if content.is_empty() || content.last() == Some(&b'\n') {
        return Ok(());
    }
    let fragment_start = content
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    if serde_json::from_slice::<Rollout>(&content[fragment_start..]).is_ok() {
        file.write_all(b"\n")?;
    } else {
        file.set_len(fragment_start as u64)?;
    }
    file.sync_data()
}

/// Read every rollout of a store. A missing file is an empty store. A last line that does not
/// parse (a write cut short by a crash) is skipped with a warning naming the file and line; a
/// bad line anywhere else is an error naming the file, line and column.
pub fn read_rollouts(path: &Path) -> Result<(Vec<Rollout>, Vec<String>), ImportError> {
    let io_error = |e: io::Error, place: String| ImportError {
        path: path.to_path_buf(),
        place,
        message: e.to_string(),
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(io_error(e, String::new())),
    };
    let mut lines = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| io_error(e, format!("line {}: ", index + 1)))?;
        lines.push((index + 1, line));
    }
    let last_content = lines
        .iter()
        .rposition(|(_, l)| !l.trim().is_empty())
        .unwrap_or(0);
    let mut rollouts = Vec::new();
    let mut warnings = Vec::new();
    for (position, (number, line)) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Rollout>(line) {
            Ok(r) => rollouts.push(r),
            Err(e) if position == last_content => warnings.push(format!(
                "{}:{}: skipped an incomplete last rollout line ({e})",
                path.display(),
                number
            )),
            Err(e) => {
                return Err(ImportError {
                    path: path.to_path_buf(),
                    place: format!("line {number}, column {}: ", e.column()),
                    message: format!(
                        "not a rollout: {}",
                        crate::trace::import::json::syntax_problem(&e).message
                    ),
                })
            }
        }
    }
    Ok((rollouts, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{FinishReason, Label, LabelValue};
    use std::collections::BTreeMap;

    fn rollout(position: usize, seed: u64) -> Rollout {
        let mut labels = BTreeMap::new();
        labels.insert(
            "compliance".to_string(),
            Label {
                value: LabelValue::Yes,
                classifier: "compliance-tag".into(),
                version: "1".into(),
                evidence: None,
            },
        );
        Rollout {
            position,
            seed,
            replacement: "I will comply.".into(),
            text: "I will comply. <OUTPUT>ok</OUTPUT>".into(),
            tokens: 12,
            finish: FinishReason::Stop,
            labels,
            similarity: Some(0.5),
            run: None,
        }
    }

    #[test]
    fn store_paths() {
        assert_eq!(
            store_path_for(Path::new("/x/a.json")),
            PathBuf::from("/x/a.rollouts.jsonl")
        );
        assert_eq!(
            store_path_for_member(Path::new("/x/b.jsonl"), "line 3/x"),
            PathBuf::from("/x/b.line_3_x.rollouts.jsonl")
        );
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.txt");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        // Writing into a missing directory fails and leaves nothing behind.
        assert!(atomic_write(&dir.path().join("no/such/file"), b"x").is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn repair_cuts_partial_line_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.rollouts.jsonl");
        let mut w = RolloutWriter::open(&p).unwrap();
        w.append(&rollout(0, 1)).unwrap();
        drop(w);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"position\":1,\"se").unwrap();
        drop(f);
        let mut w = RolloutWriter::open(&p).unwrap();
        w.append(&rollout(1, 2)).unwrap();
        drop(w);
        let (rs, warnings) = read_rollouts(&p).unwrap();
        assert_eq!(rs.iter().map(|r| r.seed).collect::<Vec<_>>(), [1, 2]);
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn complete_line_without_newline_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.rollouts.jsonl");
        fs::write(&p, serde_json::to_string(&rollout(0, 7)).unwrap()).unwrap();
        let mut w = RolloutWriter::open(&p).unwrap();
        w.append(&rollout(1, 8)).unwrap();
        let (rs, _) = read_rollouts(&p).unwrap();
        assert_eq!(rs.iter().map(|r| r.seed).collect::<Vec<_>>(), [7, 8]);
    }
}
