//! Where a derived trace (trace::intervention) is kept: `PARENT~EDIT.json` beside its parent's
//! file, with its own rollout store beside it. Writing it again reuses the file, so a repeated
//! intervention tops up the same rollouts instead of starting over.

use std::io;
use std::path::{Path, PathBuf};

use crate::trace::Trace;

/// `DIR/<derived id>.json` beside the parent's file (or inside the parent's folder), with any
/// character outside `[A-Za-z0-9._~-]` written as `_`.
pub fn derived_path_for(parent_path: &Path, derived_id: &str) -> PathBuf {
    let dir = if parent_path.is_dir() {
        parent_path.to_path_buf()
    } else {
        parent_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    };
    let safe: String = derived_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '~') {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{safe}.json"))
}

/// The derived traces' files of the trace `parent_id` read from `parent_path`: every
/// `<id>~….json` where [`derived_path_for`] writes them, sorted by name. Their own stores and
/// the files kept beside stores are not traces and are left out.
pub fn derived_files_of(parent_path: &Path, parent_id: &str) -> Vec<PathBuf> {
    let probe = derived_path_for(parent_path, &format!("{parent_id}~"));
    let (Some(dir), Some(name)) = (probe.parent(), probe.file_name()) else {
        return Vec::new();
    };
    let prefix = name.to_string_lossy().trim_end_matches(".json").to_string();
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with(&prefix) && n.ends_with(".json") && !n.ends_with(".manifest.json")
            }) && p.is_file()
        })
        .collect();
    found.sort();
    found
}

/// Whether `path` sits where [`derived_path_for`] puts the derived traces of the trace read from
/// `parent_path`: beside the parent's file, or inside the parent's folder. Decided from the
/// paths alone, without touching the file system, so a view can ask it every frame.
pub fn is_beside(parent_path: &Path, path: &Path) -> bool {
    let dir = path.parent();
    dir == Some(parent_path) || dir == parent_path.parent()
}

/// What [`save_derived`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Saved {
    Written,
    /// The same derived trace was already there (same parent, edit, prompt and reasoning).
    Reused,
}

/// Write the derived trace atomically, or reuse the one already at `path` when it is the same.
/// A different trace under that name is an error naming the file, never overwritten.
pub fn save_derived(path: &Path, trace: &Trace) -> io::Result<Saved> {
    if path.exists() {
        let text = std::fs::read_to_string(path)
            .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", path.display())))?;
        let existing: Trace = serde_json::from_str(&text).map_err(|e| {
            io::Error::other(format!("{}: not a derived trace: {e}", path.display()))
        })?;
        if existing.derived.is_some()
            && existing.derived == trace.derived
            && existing.response == trace.response
            && existing.prompt == trace.prompt
        {
            return Ok(Saved::Reused);
        }
        return Err(io::Error::other(format!(
            "{} exists and holds another trace; move it away to make this intervention again",
            path.display()
        )));
    }
    super::save_trace(path, trace)
        .map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))?;
    Ok(Saved::Written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::intervention::{derive, Edit};
    use crate::trace::Message;

    fn parent() -> Trace {
        let mut t = Trace::new(
            "af/1",
            vec![Message::new("user", "q")],
            "<think>The first sentence is here. The second sentence follows it.</think>",
        );
        t.sentences = crate::trace::split::split_response(&t.response, &Default::default());
        t
    }

    #[test]
    fn the_derived_file_sits_beside_its_parent_and_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let parent_path = dir.path().join("af.json");
        let d = derive(&parent(), Edit::Delete { sentence: 1 }).unwrap();
        let path = derived_path_for(&parent_path, &d.id);
        assert_eq!(path, dir.path().join("af_1~del1.json"));
        assert!(is_beside(&parent_path, &path));
        assert!(!is_beside(
            &parent_path,
            &dir.path().join("other/af_1~del1.json")
        ));
        // A folder trace keeps its derived traces inside it.
        let folder = dir.path().join("problem_1");
        std::fs::create_dir(&folder).unwrap();
        let inside = derived_path_for(&folder, "p~del0");
        assert_eq!(inside, folder.join("p~del0.json"));
        assert!(is_beside(&folder, &inside));
        assert_eq!(save_derived(&path, &d).unwrap(), Saved::Written);
        assert_eq!(save_derived(&path, &d).unwrap(), Saved::Reused);
        let back: Trace = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back, d);
        // Found again from the parent's path, without the store beside it.
        std::fs::write(dir.path().join("af_1~del1.rollouts.jsonl"), "").unwrap();
        std::fs::write(dir.path().join("af_10.json"), "{}").unwrap();
        assert_eq!(derived_files_of(&parent_path, "af/1"), vec![path.clone()]);
        // Another trace under the same name is refused, and the file is left as it was.
        let other = derive(&parent(), Edit::Delete { sentence: 0 }).unwrap();
        let err = save_derived(&path, &other).unwrap_err().to_string();
        assert!(
            err.contains("af_1~del1.json") && err.contains("another trace"),
            "{err}"
        );
        assert_eq!(
            serde_json::from_str::<Trace>(&std::fs::read_to_string(&path).unwrap()).unwrap(),
            d
        );
    }
}
