//! Put each Thought Anchors metric on the chunk it belongs to, and turn the pipeline's
//! "nothing measured" zeros into undefined values (docs/METHOD.md, "Importing Thought Anchors
//! folders").
//!
//! Records are indexed by `chunk_idx`, which can have gaps. Some files store every record's
//! metrics after a gap one or more records late: their pipeline indexed positionally. The data
//! tells which: for a correctly placed record p the stored resampling importance is
//! `rate[p+1] − rate[p]` (the kept rate minus the resampled one, both stored with the records);
//! for a record whose metrics sit d records late it is `rate[p−d+1] − rate[p−d]`. Each stretch
//! between two gaps gets the offset that most of its decidable records vote for; records that
//! no stretch claims are left without metrics (theirs belong to another record).

/// The metrics of one record that move together when a stretch is realigned.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Moved {
    pub resampling: Option<f64>,
    pub counterfactual: Option<f64>,
    pub kl: Option<f64>,
    pub forced: Option<f64>,
    pub different_fraction: Option<f64>,
    pub overdeterminedness: Option<f64>,
}

/// One record as read: its chunk index, its rate (which never moves) and its metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub chunk_idx: usize,
    pub rate: Option<f64>,
    pub metrics: Moved,
}

/// The realigned metrics (same order as the records) and what was done, for the trace's notes.
#[derive(Debug, PartialEq)]
pub struct Realigned {
    pub metrics: Vec<Moved>,
    pub notes: Vec<String>,
}

/// Their numbers have two decimals at most for rates; differences carry float noise.
const TOLERANCE: f64 = 1e-6;
/// The largest lag looked for (one per gap before the stretch, in practice one or two).
const MAX_OFFSET: usize = 4;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= TOLERANCE
}

/// Does record p's stored resampling importance equal the kept-minus-resampled difference of
/// record p − d?
fn fits(records: &[Record], p: usize, d: usize) -> Option<bool> {
    let stored = records[p].metrics.resampling?;
    let q = p.checked_sub(d)?;
    let (now, next) = (records[q].rate?, records.get(q + 1)?.rate?);
    Some(close(stored, next - now))
}

/// Start indices of the stretches: a new stretch starts after every gap in `chunk_idx`.
fn stretches(records: &[Record]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for p in 1..records.len() {
        if records[p].chunk_idx != records[p - 1].chunk_idx + 1 {
            out.push(start..p);
            start = p;
        }
    }
    if !records.is_empty() {
        out.push(start..records.len());
    }
    out
}

/// The offset most decidable records of the stretch agree on, or `None` when no record decides
/// (a record decides for d when it fits d and no other offset).
fn vote(records: &[Record], stretch: std::ops::Range<usize>) -> Option<usize> {
    let mut votes = [0usize; MAX_OFFSET + 1];
    for p in stretch {
        let fitting: Vec<usize> = (0..=MAX_OFFSET)
            .filter(|&d| fits(records, p, d) == Some(true))
            .collect();
        if let [d] = fitting[..] {
            votes[d] += 1;
        }
    }
    let best = (0..=MAX_OFFSET).max_by_key(|&d| (votes[d], std::cmp::Reverse(d)))?;
    (votes[best] > 0).then_some(best)
}

/// Realign the records' metrics and mark placeholders as undefined.
pub fn realign(records: &[Record]) -> Realigned {
    let mut notes = Vec::new();
    let mut metrics: Vec<Option<Moved>> = vec![None; records.len()];
    let mut moved = 0usize;
    let mut undecided = Vec::new();
    // A stretch whose records cannot tell (e.g. one record whose importance is a placeholder)
    // keeps the offset of the stretch before it: the lag only changes at a gap, and unknown
    // means unchanged is the better bet. It is only worth a note when the file lags somewhere.
    let mut offset = 0;
    for stretch in stretches(records) {
        match vote(records, stretch.clone()) {
            Some(d) => offset = d,
            None if stretch.start > 0 => undecided.push(records[stretch.start].chunk_idx),
            None => {}
        }
        for p in stretch {
            let Some(target) = p.checked_sub(offset) else {
                continue;
            };
            if offset > 0 {
                moved += 1;
            }
            metrics[target] = Some(records[p].metrics);
        }
    }
    let orphaned = metrics.iter().filter(|m| m.is_none()).count();
    if moved > 0 {
        notes.push(format!(
            "realigned: the file stored the metrics of {moved} records after a gap in chunk_idx \
             late (their pipeline indexed by position; detected because the stored resampling \
             importance matched the rates of an earlier record); each was moved back to its own \
             sentence{}",
            if orphaned > 0 {
                format!(", and {orphaned} sentence(s) whose metrics were lost show n/a")
            } else {
                String::new()
            }
        ));
    }
    if !undecided.is_empty() && moved > 0 {
        notes.push(format!(
            "alignment undecided after the gap before chunk_idx {}: no record there lets the \
             rates tell where its metrics belong, so they keep the lag of the stretch before",
            join(&undecided)
        ));
    }
    let mut out: Vec<Moved> = metrics.into_iter().map(Option::unwrap_or_default).collect();
    let placeholders = clear_placeholders(records, &mut out);
    if placeholders > 0 {
        notes.push(format!(
            "{placeholders} zero(s) the pipeline writes where nothing was measured (no next \
             chunk, no differing resample) are shown as n/a"
        ));
    }
    Realigned {
        metrics: out,
        notes,
    }
}

fn join(xs: &[usize]) -> String {
    xs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The pipeline writes 0 for: every metric of the last chunk; the resampling importance of a
/// chunk whose `chunk_idx + 1` is missing; counterfactual metrics of a chunk none of whose
/// resamples differed. Those zeros are "not measured", not "no effect". Returns how many
/// values were cleared.
fn clear_placeholders(records: &[Record], metrics: &mut [Moved]) -> usize {
    let mut cleared = 0;
    let mut clear = |slot: &mut Option<f64>| {
        if *slot == Some(0.0) {
            *slot = None;
            cleared += 1;
        }
    };
    let last = records.len().saturating_sub(1);
    for (p, m) in metrics.iter_mut().enumerate() {
        if p == last {
            for slot in [
                &mut m.resampling,
                &mut m.counterfactual,
                &mut m.kl,
                &mut m.forced,
                &mut m.different_fraction,
                &mut m.overdeterminedness,
            ] {
                clear(slot);
            }
            continue;
        }
        // A zero that the rates contradict was not computed from them.
        let kept_minus_resampled = match (records[p].rate, records[p + 1].rate) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        if m.resampling == Some(0.0) && kept_minus_resampled.is_some_and(|d| !close(d, 0.0)) {
            clear(&mut m.resampling);
        }
        if m.different_fraction == Some(0.0) {
            clear(&mut m.counterfactual);
            clear(&mut m.kl);
        }
    }
    cleared
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records with rates and the resampling importance each *should* carry.
    fn aligned(idx: &[usize], rates: &[f64]) -> Vec<Record> {
        (0..idx.len())
            .map(|p| Record {
                chunk_idx: idx[p],
                rate: Some(rates[p]),
                metrics: Moved {
                    resampling: rates.get(p + 1).map(|n| n - rates[p]).or(Some(0.0)),
                    counterfactual: Some(p as f64 + 100.0),
                    different_fraction: Some(0.5),
                    ..Moved::default()
                },
            })
            .collect()
    }

    #[test]
    fn aligned_file_is_left_alone_except_placeholders() {
        let recs = aligned(&[0, 1, 2, 4, 5, 6], &[0.1, 0.3, 0.2, 0.6, 0.5, 0.9]);
        let r = realign(&recs);
        for p in 0..5 {
            assert_eq!(r.metrics[p].counterfactual, Some(p as f64 + 100.0));
        }
        // The last record's zero resampling importance is a placeholder.
        assert_eq!(r.metrics[5].resampling, None);
        assert!(r.notes.iter().all(|n| !n.starts_with("realigned")), "{r:?}");
    }

    #[test]
    fn metrics_stored_one_record_late_after_a_gap_move_back() {
        let good = aligned(&[0, 1, 2, 4, 5, 6, 7], &[0.1, 0.3, 0.2, 0.6, 0.5, 0.9, 0.4]);
        // Their bug: from the first record after the gap (p = 3) on, record p holds p − 1's.
        let mut late = good.clone();
        for p in 3..late.len() {
            late[p].metrics = good[p - 1].metrics;
        }
        let r = realign(&late);
        for (p, want) in good.iter().enumerate().take(6) {
            assert_eq!(
                r.metrics[p].counterfactual, want.metrics.counterfactual,
                "{p}"
            );
        }
        // The last record's metrics were never stored.
        assert_eq!(r.metrics[6], Moved::default());
        assert!(r.notes[0].starts_with("realigned"), "{:?}", r.notes);
    }

    #[test]
    fn placeholder_zero_before_a_gap_is_na_but_a_real_zero_stays() {
        let mut recs = aligned(&[0, 1, 3, 4], &[0.2, 0.2, 0.5, 0.7]);
        // Record 0: rates equal, so its 0 is a real zero. Record 1 precedes a gap: placeholder.
        recs[1].metrics.resampling = Some(0.0);
        let r = realign(&recs);
        assert_eq!(r.metrics[0].resampling, Some(0.0));
        assert_eq!(r.metrics[1].resampling, None);
    }

    #[test]
    fn no_differing_resample_means_no_counterfactual() {
        let mut recs = aligned(&[0, 1, 2], &[0.2, 0.4, 0.5]);
        recs[0].metrics.different_fraction = Some(0.0);
        recs[0].metrics.counterfactual = Some(0.0);
        let r = realign(&recs);
        assert_eq!(r.metrics[0].counterfactual, None);
        assert_eq!(r.metrics[1].counterfactual, Some(101.0));
    }
}
