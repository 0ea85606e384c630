//! The offline alignment-faking judge on real scratchpads: the 52 hand-labelled Claude 3 Opus
//! scratchpads of `../shared/data/af-scratchpads/dev.json` (read from there, never copied into
//! the project; a note and skip locally when absent, a failure under CI=true).
//!
//! The numbers the README reports are computed here: 5-fold stratified cross-validation (a fixed
//! fold assignment: the i-th sample of each label goes to fold i mod 5). The rule judge fits
//! nothing, so each fold's numbers are its numbers on samples it never saw during fitting, and
//! the pooled confusion matrix equals the whole set's; the folds show how much they vary.

use std::path::{Path, PathBuf};

use anchorscope::behavior::parts::ResponseParts;
use anchorscope::behavior::AfRules;
use anchorscope::trace::LabelValue;
use serde_json::Value;

fn dev_set() -> Option<Vec<(String, bool, String)>> {
    let path: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/af-scratchpads/dev.json");
    if !path.is_file() {
        crate::prereq::missing(&path.display().to_string());
        return None;
    }
    let value: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    Some(
        value["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["id"].as_str().unwrap().to_string(),
                    s["label"] == "potential_faking",
                    s["text"].as_str().unwrap().to_string(),
                )
            })
            .collect(),
    )
}

#[derive(Default, Debug, Clone, Copy, PartialEq)]
struct Confusion {
    tp: u32,
    fp: u32,
    fn_: u32,
    tn: u32,
}

impl Confusion {
    fn add(&mut self, truth: bool, said: bool) {
        match (truth, said) {
            (true, true) => self.tp += 1,
            (false, true) => self.fp += 1,
            (true, false) => self.fn_ += 1,
            (false, false) => self.tn += 1,
        }
    }
    fn precision(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fp).max(1) as f64
    }
    fn recall(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fn_).max(1) as f64
    }
}

#[test]
fn cross_validated_recall_precision_and_confusion_on_real_scratchpads() {
    let Some(samples) = dev_set() else { return };
    assert_eq!(samples.len(), 52);
    let judge = AfRules::builtin();
    let mut folds = [Confusion::default(); 5];
    let mut seen = [0usize; 2];
    let mut pooled = Confusion::default();
    for (id, truth, text) in &samples {
        let label = judge.classify(&ResponseParts::of(text));
        assert_ne!(label.value, LabelValue::Invalid, "{id}: no reasoning found");
        let said = label.value == LabelValue::Yes;
        let fold = seen[*truth as usize] % 5;
        seen[*truth as usize] += 1;
        folds[fold].add(*truth, said);
        pooled.add(*truth, said);
        // Every criterion's evidence is a sentence of the scratchpad itself.
        let evidence = label.evidence.unwrap();
        for line in evidence
            .lines()
            .filter(|l| l.contains(": yes, reasoning sentence"))
        {
            let quote = line.split_once(": \"").unwrap().1.trim_end_matches('"');
            let quote = quote.trim_end_matches('…');
            let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(
                flat.contains(quote),
                "{id}: evidence {quote:?} not in the text"
            );
        }
    }
    for (i, f) in folds.iter().enumerate() {
        println!(
            "fold {}: tp {} fp {} fn {} tn {}  precision {:.2} recall {:.2}",
            i + 1,
            f.tp,
            f.fp,
            f.fn_,
            f.tn,
            f.precision(),
            f.recall()
        );
    }
    println!(
        "pooled: tp {} fp {} fn {} tn {}  precision {:.3} recall {:.3}",
        pooled.tp,
        pooled.fp,
        pooled.fn_,
        pooled.tn,
        pooled.precision(),
        pooled.recall()
    );
    // The README's table ("The alignment-faking judge"): keep them equal.
    assert_eq!(
        pooled,
        Confusion {
            tp: 21,
            fp: 10,
            fn_: 4,
            tn: 17
        }
    );
}
