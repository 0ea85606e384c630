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

pub mod derived;
pub mod human;
pub mod runs;
pub mod similarities;

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

/// A file kept beside a store: `NAME.rollouts.jsonl` → `NAME.{kind}.jsonl` (run records,
/// similarity cache, human labels), or the store's name plus `.{kind}.jsonl` for an unusual name.
pub fn beside_store(store_path: &Path, kind: &str) -> PathBuf {
    let name = store_path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.strip_suffix(".rollouts.jsonl") {
        Some(stem) => store_path.with_file_name(format!("{stem}.{kind}.jsonl")),
        None => store_path.with_file_name(format!("{name}.{kind}.jsonl")),
    }
}

/// The kinds of file [`beside_store`] names.
pub const BESIDE_STORE_KINDS: [&str; 3] = ["runs", "similarities", "human"];

/// Whether `path` is one of the files a rollout store keeps beside it (`NAME.runs.jsonl`,
/// `NAME.similarities.jsonl`, `NAME.human.jsonl`), so that a directory scan reads it with its
/// trace and never as a trace of its own. Only when `NAME.rollouts.jsonl` is there too: a
/// user's trace that happens to be called `x.human.jsonl` still loads.
pub fn is_beside_store(path: &Path) -> bool {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy()) else {
        return false;
    };
    BESIDE_STORE_KINDS.iter().any(|kind| {
        name.strip_suffix(&format!(".{kind}.jsonl"))
            .is_some_and(|stem| {
                path.with_file_name(format!("{stem}.rollouts.jsonl"))
                    .is_file()
            })
    })
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
    ///
    /// Refuses a store that is a symbolic link or not a regular file (a repair cuts the file,
    /// and through a link it would cut another one), and takes an exclusive advisory lock held
    /// until the writer is dropped: a second writer (another `analyze`, another explorer) is
    /// refused with a message saying so, so two runs never store the same seeds.
    pub fn open(path: &Path) -> io::Result<Self> {
        refuse_unsafe_target(path)?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "{} is being written by another anchorscope process (a running \
                         analyze or explorer job); wait for it to finish or cancel it, then retry",
                        path.display()
                    ),
                ))
            }
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
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

/// Refuse to write through a symbolic link, or into anything that is not a regular file
/// (a device, a directory, a FIFO). A missing file is fine: it will be created.
pub fn refuse_unsafe_target(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is a symbolic link; refusing to write through it (it could point at any \
                 file). Replace it with a regular file or remove it",
                path.display()
            ),
        )),
        Ok(meta) if !meta.is_file() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not a regular file; refusing to write to it",
                path.display()
            ),
        )),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
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

/// Read every rollout of a store. A missing file is an empty store. A line that does not parse
/// (anywhere: a write cut short by a crash, or a corrupt line in the middle) is skipped with a
/// warning naming the file and line, and the other lines load; its position and seed, when
/// they can still be read, are returned in [`StoreRead::unreadable_seeds`] so that no top-up
/// samples that seed again. A rollout stored twice (same position and seed, e.g. by two runs
/// before stores were locked) counts once; the duplicates are dropped and reported.
pub fn read_store(path: &Path) -> Result<StoreRead, ImportError> {
    let io_error = |e: io::Error, place: String| ImportError {
        path: path.to_path_buf(),
        place,
        message: e.to_string(),
    };
    let mut out = StoreRead::default();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_error(e, String::new())),
    };
    let mut seen = std::collections::HashSet::new();
    let mut duplicates = 0usize;
    for (index, line) in BufReader::new(file).split(b'\n').enumerate() {
        let number = index + 1;
        let bytes = line.map_err(|e| io_error(e, format!("line {number}: ")))?;
        let Ok(text) = std::str::from_utf8(&bytes) else {
            out.warnings.push(format!(
                "{}:{number}: skipped a line that is not UTF-8",
                path.display()
            ));
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Rollout>(text) {
            Ok(r) => {
                if seen.insert((r.position, r.seed)) {
                    out.rollouts.push(r);
                } else {
                    duplicates += 1;
                }
            }
            Err(e) => {
                out.warnings.push(format!(
                    "{}:{number}: skipped a line that is not a rollout (column {}: {})",
                    path.display(),
                    e.column(),
                    crate::trace::import::json::syntax_problem(&e).message
                ));
                if let Some(taken) = salvage_seed(text) {
                    out.unreadable_seeds.push(taken);
                }
            }
        }
    }
    if duplicates > 0 {
        out.warnings.push(format!(
            "{}: dropped {duplicates} duplicate rollout(s) (same position and seed stored twice)",
            path.display()
        ));
    }
    out.duplicates = duplicates;
    Ok(out)
}

/// What [`read_store`] found.
#[derive(Debug, Default)]
pub struct StoreRead {
    pub rollouts: Vec<Rollout>,
    pub warnings: Vec<String>,
    /// (position, seed) of lines that could not be read but still name them.
    pub unreadable_seeds: Vec<(usize, u64)>,
    pub duplicates: usize,
}

/// The `"position"` and `"seed"` of a damaged line, when both are still legible.
fn salvage_seed(line: &str) -> Option<(usize, u64)> {
    let number = |key: &str| -> Option<u64> {
        let at = line.find(&format!("\"{key}\":"))? + key.len() + 3;
        let digits: String = line[at..]
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    Some((number("position")? as usize, number("seed")?))
}

/// Every readable rollout of a store and the warnings (see [`read_store`]).
pub fn read_rollouts(path: &Path) -> Result<(Vec<Rollout>, Vec<String>), ImportError> {
    let read = read_store(path)?;
    Ok((read.rollouts, read.warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{FinishReason, Label, LabelValue};
    use std::collections::BTreeMap;

    #[test]
    fn files_beside_a_store_are_recognised_only_with_their_store() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("t.runs.jsonl");
        let human = dir.path().join("t.human.jsonl");
        std::fs::write(&runs, "{}\n").unwrap();
        std::fs::write(&human, "{}\n").unwrap();
        assert!(
            !is_beside_store(&runs),
            "no store beside it: it may be a trace"
        );
        std::fs::write(dir.path().join("t.rollouts.jsonl"), "").unwrap();
        assert!(is_beside_store(&runs));
        assert!(is_beside_store(&human));
        assert!(is_beside_store(&dir.path().join("t.similarities.jsonl")));
        assert!(!is_beside_store(&dir.path().join("t.json")));
        assert!(!is_beside_store(&dir.path().join("u.runs.jsonl")));
    }

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
            recurrence: None,
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

    #[test]
    fn corrupt_middle_line_is_skipped_and_its_seed_kept_taken() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.rollouts.jsonl");
        let mut text = String::new();
        text.push_str(&serde_json::to_string(&rollout(0, 1)).unwrap());
        text.push('\n');
        text.push_str("{\"position\":0,\"seed\":77,\"replacement\":\"x\",GARBAGE\n");
        text.push_str(&serde_json::to_string(&rollout(1, 2)).unwrap());
        text.push('\n');
        fs::write(&p, text).unwrap();
        let read = read_store(&p).unwrap();
        assert_eq!(
            read.rollouts.iter().map(|r| r.seed).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(read.warnings.len(), 1, "{:?}", read.warnings);
        assert!(
            read.warnings[0].contains(":2: skipped"),
            "{:?}",
            read.warnings
        );
        assert_eq!(read.unreadable_seeds, [(0, 77)]);
    }

    #[test]
    fn duplicate_position_seed_pairs_count_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.rollouts.jsonl");
        let line = serde_json::to_string(&rollout(3, 9)).unwrap();
        let other = serde_json::to_string(&rollout(4, 9)).unwrap();
        fs::write(&p, format!("{line}\n{other}\n{line}\n")).unwrap();
        let read = read_store(&p).unwrap();
        assert_eq!(read.rollouts.len(), 2);
        assert_eq!(read.duplicates, 1);
        assert!(
            read.warnings[0].contains("1 duplicate"),
            "{:?}",
            read.warnings
        );
    }

    #[test]
    fn a_second_writer_is_refused_while_the_first_holds_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.rollouts.jsonl");
        let first = RolloutWriter::open(&p).unwrap();
        let err = RolloutWriter::open(&p)
            .err()
            .expect("second writer refused");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(
            err.to_string().contains("another anchorscope process"),
            "{err}"
        );
        drop(first);
        assert!(
            RolloutWriter::open(&p).is_ok(),
            "free again once the first is dropped"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_store_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        fs::write(&victim, b"precious, no newline at the end").unwrap();
        let p = dir.path().join("t.rollouts.jsonl");
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        let err = RolloutWriter::open(&p).err().expect("refused");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(
            fs::read(&victim).unwrap(),
            b"precious, no newline at the end"
        );
    }
}
