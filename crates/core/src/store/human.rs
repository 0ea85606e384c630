//! Human labels: a person's verdict on a rollout for one behavior, kept in `NAME.human.jsonl`
//! beside `NAME.rollouts.jsonl` (append-only, one line per verdict, synced). A verdict never
//! replaces the classifier's label: at load it is attached beside it, under
//! `BEHAVIOR (human)`, and rates use it where present ([`crate::trace::Rollout::label`]).
//! The latest verdict for a (position, seed, behavior) wins; a `null` value clears it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::trace::import::ImportError;
use crate::trace::{Label, LabelValue, Rollout, HUMAN_SUFFIX};

/// The classifier name of a person's label.
pub const HUMAN_CLASSIFIER: &str = "human";

/// One verdict as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HumanVerdict {
    pub position: usize,
    pub seed: u64,
    pub behavior: String,
    /// `None` clears an earlier verdict.
    pub value: Option<LabelValue>,
    /// UTC time, `YYYY-MM-DDTHH:MM:SSZ`.
    pub time: String,
}

/// `NAME.human.jsonl` beside `NAME.rollouts.jsonl`.
pub fn human_path_for(store_path: &Path) -> PathBuf {
    super::beside_store(store_path, "human")
}

/// Append one verdict and sync it. Refuses a symlink or a non-file, as the store does.
pub fn append_verdict(path: &Path, verdict: &HumanVerdict) -> io::Result<()> {
    super::refuse_unsafe_target(path)?;
    let mut line = serde_json::to_string(verdict).map_err(io::Error::other)?;
    line.push('\n');
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(line.as_bytes())?;
    file.sync_data()
}

/// Every verdict in the file, in order; a missing file is none. A line that does not parse is
/// skipped with a warning naming it.
pub fn read_verdicts(path: &Path) -> Result<(Vec<HumanVerdict>, Vec<String>), ImportError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(ImportError::new(path, "", e.to_string())),
    };
    let mut verdicts = Vec::new();
    let mut warnings = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line =
            line.map_err(|e| ImportError::new(path, format!("line {}: ", i + 1), e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<HumanVerdict>(&line) {
            Ok(v) => verdicts.push(v),
            Err(e) => warnings.push(format!(
                "{}:{}: skipped a human label that cannot be read ({e})",
                path.display(),
                i + 1
            )),
        }
    }
    Ok((verdicts, warnings))
}

/// The label a verdict becomes: classifier `human`, version = the time it was given.
pub fn human_label(value: LabelValue, time: &str) -> Label {
    Label {
        value,
        classifier: HUMAN_CLASSIFIER.into(),
        version: time.into(),
        evidence: Some(format!("set by a person at {time}")),
    }
}

/// Attach the latest verdicts to the rollouts they name (by position and seed), as
/// `BEHAVIOR (human)` labels; returns how many rollouts carry one. Verdicts naming no stored
/// rollout are ignored.
pub fn apply_verdicts(rollouts: &mut [Rollout], verdicts: &[HumanVerdict]) -> usize {
    let mut latest: BTreeMap<(usize, u64, &str), &HumanVerdict> = BTreeMap::new();
    for v in verdicts {
        latest.insert((v.position, v.seed, v.behavior.as_str()), v);
    }
    let mut applied = 0;
    for r in rollouts.iter_mut() {
        r.labels.retain(|k, _| !k.ends_with(HUMAN_SUFFIX));
        for ((position, seed, behavior), v) in latest.range((r.position, r.seed, "")..) {
            if (*position, *seed) != (r.position, r.seed) {
                break;
            }
            if let Some(value) = v.value {
                r.labels.insert(
                    format!("{behavior}{HUMAN_SUFFIX}"),
                    human_label(value, &v.time),
                );
                applied += 1;
            }
        }
    }
    applied
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(position: usize, seed: u64, value: LabelValue) -> Rollout {
        let mut r = Rollout::bare(position, seed, "");
        r.labels.insert(
            "alignment_faking".to_string(),
            Label {
                value,
                classifier: "af-rules".into(),
                version: "2".into(),
                evidence: None,
            },
        );
        r
    }

    fn verdict(position: usize, seed: u64, value: Option<LabelValue>, time: &str) -> HumanVerdict {
        HumanVerdict {
            position,
            seed,
            behavior: "alignment_faking".into(),
            value,
            time: time.into(),
        }
    }

    #[test]
    fn verdicts_round_trip_and_sit_beside_the_classifier_label() {
        let dir = tempfile::tempdir().unwrap();
        let path = human_path_for(&dir.path().join("t.rollouts.jsonl"));
        assert_eq!(path.file_name().unwrap(), "t.human.jsonl");
        append_verdict(
            &path,
            &verdict(0, 7, Some(LabelValue::Yes), "2026-01-01T00:00:00Z"),
        )
        .unwrap();
        append_verdict(
            &path,
            &verdict(0, 7, Some(LabelValue::No), "2026-01-02T00:00:00Z"),
        )
        .unwrap();
        append_verdict(
            &path,
            &verdict(1, 8, Some(LabelValue::Yes), "2026-01-03T00:00:00Z"),
        )
        .unwrap();
        append_verdict(&path, &verdict(1, 8, None, "2026-01-04T00:00:00Z")).unwrap();
        let (verdicts, warnings) = read_verdicts(&path).unwrap();
        assert_eq!(verdicts.len(), 4);
        assert!(warnings.is_empty());

        let mut rollouts = vec![
            rollout(0, 7, LabelValue::Yes),
            rollout(1, 8, LabelValue::Yes),
            rollout(2, 9, LabelValue::No),
        ];
        assert_eq!(apply_verdicts(&mut rollouts, &verdicts), 1);
        // The latest verdict wins; the classifier's label stays; rates read the person's.
        let human = &rollouts[0].labels["alignment_faking (human)"];
        assert_eq!(
            (human.value, human.classifier.as_str()),
            (LabelValue::No, "human")
        );
        assert_eq!(
            rollouts[0].labels["alignment_faking"].classifier,
            "af-rules"
        );
        assert_eq!(rollouts[0].label("alignment_faking"), Some(LabelValue::No));
        // A cleared verdict leaves the classifier's label in charge.
        assert_eq!(rollouts[1].label("alignment_faking"), Some(LabelValue::Yes));
        assert!(!rollouts[1].labels.contains_key("alignment_faking (human)"));
    }
}
