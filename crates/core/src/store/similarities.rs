//! The similarity cache: cosine similarities of replacement sentences to the sentence they
//! replaced, computed once by the sentence embedder for rollouts that were stored without one
//! (imported Thought Anchors rollouts: their files hold the replacement text but not its
//! similarity), and kept in `NAME.similarities.jsonl` beside `NAME.rollouts.jsonl`.
//!
//! Counterfactual importance needs those similarities (METHOD.md "Counterfactual importance");
//! computing them for a full folder takes minutes on a CPU, so they are computed once and read
//! back on every load. A line is keyed by the embedder and by hashes of both texts, so an
//! edited sentence or another embedder never reuses a stale value. Append-only, like the store.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::trace::import::ImportError;
use crate::trace::{Rollout, Trace};

/// The embedder whose similarities the cache holds (the one the worker uses).
pub const EMBEDDER: &str = "all-MiniLM-L6-v2";

/// One cached similarity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CachedSimilarity {
    pub embedder: String,
    /// Hash of the original sentence S_i (see [`text_hash`]).
    pub original: String,
    /// Hash of the replacement T_i.
    pub replacement: String,
    pub similarity: f32,
}

/// `NAME.similarities.jsonl` beside `NAME.rollouts.jsonl`.
pub fn similarities_path_for(store_path: &Path) -> PathBuf {
    super::beside_store(store_path, "similarities")
}

/// First 16 bytes of the SHA-256 of the text, as hex: collisions are out of reach for the
/// number of sentences a trace has.
pub fn text_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Cached similarities by (original hash, replacement hash).
pub type SimilarityCache = HashMap<(String, String), f32>;

/// The cache as a map from (original hash, replacement hash) to similarity, for [`EMBEDDER`]
/// only. A missing file is an empty cache; an unreadable line is skipped with a warning (it is
/// only a cache: the value is computed again).
pub fn read_cache(path: &Path) -> Result<(SimilarityCache, Vec<String>), ImportError> {
    let mut map = HashMap::new();
    let mut warnings = Vec::new();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((map, warnings)),
        Err(e) => return Err(ImportError::new(path, "", e.to_string())),
    };
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line
            .map_err(|e| ImportError::new(path, format!("line {}: ", index + 1), e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<CachedSimilarity>(&line) {
            Ok(c) if c.embedder == EMBEDDER && c.similarity.is_finite() => {
                map.insert((c.original, c.replacement), c.similarity);
            }
            Ok(_) => {}
            Err(e) => warnings.push(format!(
                "{}:{}: skipped an unreadable cached similarity ({e}); it will be computed again",
                path.display(),
                index + 1
            )),
        }
    }
    Ok((map, warnings))
}

/// Append entries and sync them. Refuses a symlink or a non-file, as the store does.
pub fn append_cache(path: &Path, entries: &[CachedSimilarity]) -> io::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    super::refuse_unsafe_target(path)?;
    let mut text = String::new();
    for e in entries {
        text.push_str(&serde_json::to_string(e).map_err(io::Error::other)?);
        text.push('\n');
    }
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_data()
}

/// The original sentence a rollout at `position` replaced, when there is one (the last
/// position resamples the output: nothing was replaced).
pub fn original_of(trace: &Trace, position: usize) -> Option<&str> {
    trace.sentences.get(position).map(|s| s.text.as_str())
}

/// The rollouts whose similarity is missing but can be computed: a replacement and an
/// original sentence both exist.
pub fn needs_similarity(trace: &Trace, rollout: &Rollout) -> bool {
    rollout.similarity.is_none()
        && !rollout.replacement.trim().is_empty()
        && original_of(trace, rollout.position).is_some()
}

/// Fill missing similarities from the cache; returns how many were filled.
pub fn apply_cache(trace: &Trace, rollouts: &mut [Rollout], cache: &SimilarityCache) -> usize {
    if cache.is_empty() {
        return 0;
    }
    let mut filled = 0;
    for r in rollouts.iter_mut() {
        if !needs_similarity(trace, r) {
            continue;
        }
        let Some(original) = original_of(trace, r.position) else {
            continue;
        };
        let key = (text_hash(original), text_hash(&r.replacement));
        if let Some(&s) = cache.get(&key) {
            r.similarity = Some(s);
            filled += 1;
        }
    }
    filled
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Message, Sentence};

    fn trace() -> Trace {
        let mut t = Trace::new(
            "t",
            vec![Message::new("user", "q")],
            "<think>One. Two.</think>".to_string(),
        );
        t.sentences = vec![
            Sentence {
                text: "One.".into(),
                start: 7,
                end: 11,
            },
            Sentence {
                text: "Two.".into(),
                start: 12,
                end: 16,
            },
        ];
        t
    }

    fn rollout(position: usize, replacement: &str) -> Rollout {
        Rollout::bare(position, 0, replacement)
    }

    #[test]
    fn path_sits_beside_the_store() {
        assert_eq!(
            similarities_path_for(Path::new("/d/x.rollouts.jsonl")),
            Path::new("/d/x.similarities.jsonl")
        );
    }

    #[test]
    fn cache_round_trips_and_fills_only_matching_texts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.similarities.jsonl");
        let entry = |o: &str, r: &str, s: f32, embedder: &str| CachedSimilarity {
            embedder: embedder.into(),
            original: text_hash(o),
            replacement: text_hash(r),
            similarity: s,
        };
        append_cache(
            &path,
            &[
                entry("One.", "Uno.", 0.9, EMBEDDER),
                entry("Two.", "Dos.", 0.3, "other-embedder"),
            ],
        )
        .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{not json\n")
            .unwrap();
        let (cache, warnings) = read_cache(&path).unwrap();
        assert_eq!(cache.len(), 1, "another embedder's value is not used");
        assert!(warnings[0].contains(":3:"), "{warnings:?}");

        let t = trace();
        let mut rollouts = vec![
            rollout(0, "Uno."),
            rollout(1, "Dos."),
            rollout(0, "Other."),
            rollout(2, "Output."),
        ];
        assert_eq!(apply_cache(&t, &mut rollouts, &cache), 1);
        assert_eq!(rollouts[0].similarity, Some(0.9));
        assert!(rollouts[1..].iter().all(|r| r.similarity.is_none()));
        assert!(
            !needs_similarity(&t, &rollouts[3]),
            "the last position has no original"
        );
    }

    #[test]
    fn a_symlinked_cache_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("victim");
        std::fs::write(&target, "keep").unwrap();
        let link = dir.path().join("x.similarities.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let entry = CachedSimilarity {
            embedder: EMBEDDER.into(),
            original: "a".into(),
            replacement: "b".into(),
            similarity: 1.0,
        };
        assert!(append_cache(&link, &[entry]).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }
}
