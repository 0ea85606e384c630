//! Order-preserving alignment of two sentence lists by similarity (Needleman–Wunsch with free
//! gaps): the alignment that maximizes the total similarity of its aligned pairs, where a pair
//! is only allowed when its similarity reaches a threshold and no two pairs cross.
//!
//! Free gaps (no penalty) because leaving a sentence unaligned is the honest answer when it has
//! no counterpart; a penalty would push weak pairs into the alignment. The threshold is what
//! keeps unrelated sentences apart.

use serde::{Deserialize, Serialize};

/// Why a similarity matrix or a threshold was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AlignError {
    #[error("similarity matrix has {got} values, expected {rows} × {cols} = {}", rows * cols)]
    Size {
        rows: usize,
        cols: usize,
        got: usize,
    },
    #[error("similarity matrix row {row} has {got} values, expected {cols}")]
    RowLength { row: usize, got: usize, cols: usize },
    #[error("similarity of sentence {row} of A and {col} of B is not a number ({value})")]
    NotFinite { row: usize, col: usize, value: f32 },
    #[error("similarity matrix is {rows} × {cols}, but the traces have {want_rows} and {want_cols} sentences")]
    Shape {
        rows: usize,
        cols: usize,
        want_rows: usize,
        want_cols: usize,
    },
    #[error("minimum similarity {0} is not a number")]
    Threshold(f32),
}

/// Similarities between the sentences of A (rows) and of B (columns): cosines, in [-1, 1] for
/// embeddings or [0, 1] for word counts. Every value is finite (checked on construction).
#[derive(Clone, Debug, PartialEq)]
pub struct SimilarityMatrix {
    rows: usize,
    cols: usize,
    values: Vec<f32>,
}

impl SimilarityMatrix {
    /// A `rows × cols` matrix from its values in row order.
    pub fn new(rows: usize, cols: usize, values: Vec<f32>) -> Result<Self, AlignError> {
        if rows.checked_mul(cols) != Some(values.len()) {
            return Err(AlignError::Size {
                rows,
                cols,
                got: values.len(),
            });
        }
        if let Some(at) = values.iter().position(|v| !v.is_finite()) {
            return Err(AlignError::NotFinite {
                row: at / cols.max(1),
                col: at % cols.max(1),
                value: values[at],
            });
        }
        Ok(Self { rows, cols, values })
    }

    /// A matrix from one row per sentence of A; `cols` (the sentences of B) is needed because
    /// A may have none.
    pub fn from_rows(rows: Vec<Vec<f32>>, cols: usize) -> Result<Self, AlignError> {
        let n = rows.len();
        let mut values = Vec::with_capacity(n * cols);
        for (row, r) in rows.into_iter().enumerate() {
            if r.len() != cols {
                return Err(AlignError::RowLength {
                    row,
                    got: r.len(),
                    cols,
                });
            }
            values.extend(r);
        }
        Self::new(n, cols, values)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The similarity of sentence `i` of A and `j` of B, `None` outside the matrix.
    pub fn get(&self, i: usize, j: usize) -> Option<f32> {
        (i < self.rows && j < self.cols).then(|| self.values[i * self.cols + j])
    }
}

/// One row of an alignment: a sentence of A with its counterpart in B, or a sentence of either
/// side alone (a gap on the other side).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlignedPair {
    /// Index of the sentence in A; `None` where B's sentence has no counterpart in A.
    pub a: Option<usize>,
    /// Index of the sentence in B; `None` where A's sentence has no counterpart in B.
    pub b: Option<usize>,
    /// The similarity of the two sentences when both are present.
    pub similarity: Option<f32>,
}

impl AlignedPair {
    /// Both sides present.
    pub fn is_aligned(&self) -> bool {
        self.a.is_some() && self.b.is_some()
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Step {
    Match,
    SkipA,
    SkipB,
}

/// The monotone alignment of all sentences of A and B that maximizes the summed similarity of
/// its pairs, pairing only sentences whose similarity is at least `min_similarity`.
///
/// Every sentence of A and of B appears in exactly one row, in its own order; no two pairs
/// cross. Among alignments of equal total, the one that pairs earlier sentences is taken (ties
/// prefer a pair, then leaving A's sentence alone before B's), so the result is deterministic.
/// A NaN threshold pairs nothing.
pub fn align(sim: &SimilarityMatrix, min_similarity: f32) -> Vec<AlignedPair> {
    let (n, m) = (sim.rows, sim.cols);
    // best[i][j]: the best total for the suffixes A[i..], B[j..] (filled from the end so the
    // read-back runs forwards and ties resolve toward early pairs).
    let width = m + 1;
    let mut best = vec![0.0f64; (n + 1) * width];
    let mut step = vec![Step::SkipA; (n + 1) * width];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            let s = sim.values[i * m + j];
            let skip_a = best[(i + 1) * width + j];
            let skip_b = best[i * width + j + 1];
            let pair = (s >= min_similarity).then(|| f64::from(s) + best[(i + 1) * width + j + 1]);
            let (value, choice) = match pair {
                Some(p) if p >= skip_a && p >= skip_b => (p, Step::Match),
                _ if skip_a >= skip_b => (skip_a, Step::SkipA),
                _ => (skip_b, Step::SkipB),
            };
            best[i * width + j] = value;
            step[i * width + j] = choice;
        }
    }
    let mut out = Vec::with_capacity(n + m);
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        let choice = if i == n {
            Step::SkipB
        } else if j == m {
            Step::SkipA
        } else {
            step[i * width + j]
        };
        match choice {
            Step::Match => {
                out.push(AlignedPair {
                    a: Some(i),
                    b: Some(j),
                    similarity: Some(sim.values[i * m + j]),
                });
                i += 1;
                j += 1;
            }
            Step::SkipA => {
                out.push(AlignedPair {
                    a: Some(i),
                    b: None,
                    similarity: None,
                });
                i += 1;
            }
            Step::SkipB => {
                out.push(AlignedPair {
                    a: None,
                    b: Some(j),
                    similarity: None,
                });
                j += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn matrix(rows: &[&[f32]], cols: usize) -> SimilarityMatrix {
        SimilarityMatrix::from_rows(rows.iter().map(|r| r.to_vec()).collect(), cols).unwrap()
    }

    fn pairs(p: &[AlignedPair]) -> Vec<(Option<usize>, Option<usize>)> {
        p.iter().map(|x| (x.a, x.b)).collect()
    }

    #[test]
    fn identity_aligns_every_sentence_with_itself() {
        let m = matrix(&[&[1.0, 0.2, 0.1], &[0.2, 1.0, 0.3], &[0.1, 0.3, 1.0]], 3);
        let p = align(&m, 0.5);
        assert_eq!(
            pairs(&p),
            vec![(Some(0), Some(0)), (Some(1), Some(1)), (Some(2), Some(2))]
        );
        assert_eq!(p[1].similarity, Some(1.0));
    }

    #[test]
    fn an_inserted_sentence_is_a_gap() {
        // B = A with a new sentence between A's 0 and 1.
        let m = matrix(&[&[0.9, 0.1, 0.2], &[0.2, 0.3, 0.95]], 3);
        let p = align(&m, 0.5);
        assert_eq!(
            pairs(&p),
            vec![(Some(0), Some(0)), (None, Some(1)), (Some(1), Some(2))]
        );
        assert_eq!(p[1].similarity, None);
    }

    #[test]
    fn below_the_threshold_nothing_pairs_even_when_it_is_the_best_there_is() {
        let m = matrix(&[&[0.49, 0.1], &[0.2, 0.8]], 2);
        let p = align(&m, 0.5);
        assert_eq!(
            pairs(&p),
            vec![(Some(0), None), (None, Some(0)), (Some(1), Some(1))]
        );
        // With a lower threshold the weak pair is taken: it adds to the total.
        let p = align(&m, 0.4);
        assert_eq!(pairs(&p), vec![(Some(0), Some(0)), (Some(1), Some(1))]);
    }

    #[test]
    fn reordered_sentences_keep_the_stronger_pair_and_never_cross() {
        // A = [x, y], B = [y, x]: x–x 0.9, y–y 0.8. Only one of the two can stay.
        let m = matrix(&[&[0.1, 0.9], &[0.8, 0.1]], 2);
        let p = align(&m, 0.5);
        assert_eq!(
            pairs(&p),
            vec![(None, Some(0)), (Some(0), Some(1)), (Some(1), None)]
        );
    }

    #[test]
    fn the_total_is_maximized_not_the_first_pair() {
        // A0–B1 is the strongest single pair (0.95), but it leaves no pair for A1 that does not
        // cross it; A0–B0 + A1–B1 (0.6 + 0.6 = 1.2) is the larger total, so a greedy choice of
        // the best pair first would be wrong here.
        let m = matrix(&[&[0.6, 0.95], &[0.1, 0.6]], 2);
        let p = align(&m, 0.5);
        assert_eq!(pairs(&p), vec![(Some(0), Some(0)), (Some(1), Some(1))]);
    }

    #[test]
    fn ties_pair_the_earlier_sentence() {
        // A = [x, x], B = [x]: either A sentence could pair; the first one does.
        let m = matrix(&[&[1.0], &[1.0]], 1);
        assert_eq!(
            pairs(&align(&m, 0.5)),
            vec![(Some(0), Some(0)), (Some(1), None)]
        );
    }

    #[test]
    fn empty_sides() {
        let m = SimilarityMatrix::new(0, 0, vec![]).unwrap();
        assert!(align(&m, 0.5).is_empty());
        let m = SimilarityMatrix::from_rows(vec![], 2).unwrap();
        assert_eq!(
            pairs(&align(&m, 0.5)),
            vec![(None, Some(0)), (None, Some(1))]
        );
        let m = SimilarityMatrix::new(2, 0, vec![]).unwrap();
        assert_eq!(
            pairs(&align(&m, 0.5)),
            vec![(Some(0), None), (Some(1), None)]
        );
    }

    #[test]
    fn nan_threshold_pairs_nothing() {
        let m = matrix(&[&[1.0]], 1);
        assert_eq!(
            pairs(&align(&m, f32::NAN)),
            vec![(Some(0), None), (None, Some(0))]
        );
    }

    #[test]
    fn bad_matrices_are_errors_not_panics() {
        assert!(matches!(
            SimilarityMatrix::new(2, 2, vec![0.0; 3]),
            Err(AlignError::Size { got: 3, .. })
        ));
        assert!(matches!(
            SimilarityMatrix::from_rows(vec![vec![0.0, 0.1], vec![0.2]], 2),
            Err(AlignError::RowLength { row: 1, got: 1, .. })
        ));
        let err = SimilarityMatrix::new(2, 2, vec![0.0, 0.1, f32::NAN, 0.3]).unwrap_err();
        assert!(
            matches!(err, AlignError::NotFinite { row: 1, col: 0, .. }),
            "{err}"
        );
        assert!(SimilarityMatrix::new(usize::MAX, 2, vec![]).is_err());
        let m = matrix(&[&[0.5]], 1);
        assert_eq!(m.get(0, 0), Some(0.5));
        assert_eq!(m.get(1, 0), None);
        assert_eq!(m.get(0, 1), None);
    }

    /// The best total by brute force over every monotone matching (small sizes only).
    fn brute_best(sim: &SimilarityMatrix, t: f32, i: usize, j: usize) -> f64 {
        if i == sim.rows() || j == sim.cols() {
            return 0.0;
        }
        let mut best = brute_best(sim, t, i + 1, j).max(brute_best(sim, t, i, j + 1));
        let s = sim.get(i, j).unwrap();
        if s >= t {
            best = best.max(f64::from(s) + brute_best(sim, t, i + 1, j + 1));
        }
        best
    }

    proptest! {
        #[test]
        fn alignment_is_monotone_complete_and_optimal(
            (rows, cols, values) in (0usize..6, 0usize..6).prop_flat_map(|(r, c)| {
                (Just(r), Just(c), proptest::collection::vec(-1.0f32..=1.0, r * c))
            }),
            t in -0.5f32..0.9,
        ) {
            let sim = SimilarityMatrix::new(rows, cols, values).unwrap();
            let p = align(&sim, t);
            // Each sentence of each side exactly once, in order.
            let a: Vec<usize> = p.iter().filter_map(|x| x.a).collect();
            let b: Vec<usize> = p.iter().filter_map(|x| x.b).collect();
            prop_assert_eq!(a, (0..rows).collect::<Vec<_>>());
            prop_assert_eq!(b, (0..cols).collect::<Vec<_>>());
            prop_assert!(p.iter().all(|x| x.a.is_some() || x.b.is_some()));
            // Pairs at or above the threshold, with their own similarity.
            let mut total = 0.0f64;
            for x in p.iter().filter(|x| x.is_aligned()) {
                let s = sim.get(x.a.unwrap(), x.b.unwrap()).unwrap();
                prop_assert_eq!(x.similarity, Some(s));
                prop_assert!(s >= t);
                total += f64::from(s);
            }
            prop_assert!(p.iter().filter(|x| !x.is_aligned()).all(|x| x.similarity.is_none()));
            prop_assert!((total - brute_best(&sim, t, 0, 0)).abs() < 1e-5);
        }
    }
}
