//! The fallback similarity when no sentence embedder is installed: cosine of word-count
//! vectors. It sees shared words, not meaning (a paraphrase with other words scores low, a
//! negation scores high), so every output that uses it says so.

use std::collections::HashMap;

use super::align::{AlignError, SimilarityMatrix};

/// The name shown wherever this similarity was used.
pub const LEXICAL_NAME: &str = "lexical: cosine of word-count vectors";

/// Lower-cased words (maximal runs of letters and digits) with their counts.
fn word_counts(text: &str) -> HashMap<String, f64> {
    let mut counts = HashMap::new();
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        *counts.entry(word.to_lowercase()).or_insert(0.0) += 1.0;
    }
    counts
}

fn norm(counts: &HashMap<String, f64>) -> f64 {
    counts.values().map(|c| c * c).sum::<f64>().sqrt()
}

/// Cosine of the word-count vectors of two texts, in [0, 1]; 0 when either has no word (there
/// is nothing to say they share).
pub fn lexical_similarity(a: &str, b: &str) -> f32 {
    cosine(&word_counts(a), &word_counts(b))
}

fn cosine(a: &HashMap<String, f64>, b: &HashMap<String, f64>) -> f32 {
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    let dot: f64 = a
        .iter()
        .filter_map(|(w, ca)| b.get(w).map(|cb| ca * cb))
        .sum();
    // Rounding can put identical texts a hair above 1.
    (dot / (na * nb)).clamp(0.0, 1.0) as f32
}

/// The lexical similarity of every sentence of A (rows) with every sentence of B (columns).
pub fn lexical_matrix(a: &[&str], b: &[&str]) -> Result<SimilarityMatrix, AlignError> {
    let counts_b: Vec<HashMap<String, f64>> = b.iter().map(|t| word_counts(t)).collect();
    let mut values = Vec::with_capacity(a.len() * b.len());
    for text in a {
        let counts_a = word_counts(text);
        values.extend(counts_b.iter().map(|cb| cosine(&counts_a, cb)));
    }
    SimilarityMatrix::new(a.len(), b.len(), values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_words_case_insensitively_and_ignores_punctuation() {
        assert!((lexical_similarity("The cat sat.", "the CAT sat!") - 1.0).abs() < 1e-6);
        // {a:1, b:1} vs {a:1, c:1}: 1 / (√2 · √2) = 0.5.
        assert!((lexical_similarity("a b", "a c") - 0.5).abs() < 1e-6);
        // Counts matter: {x:2, y:1} vs {x:1}: 2 / √5.
        let s = lexical_similarity("x x y", "x");
        assert!((s - 2.0 / 5f32.sqrt()).abs() < 1e-6, "{s}");
        assert_eq!(lexical_similarity("abc", "xyz"), 0.0);
    }

    #[test]
    fn no_words_means_no_similarity() {
        assert_eq!(lexical_similarity("", ""), 0.0);
        assert_eq!(lexical_similarity("...", "word"), 0.0);
    }

    #[test]
    fn matrix_has_rows_of_a_and_columns_of_b() {
        let m = lexical_matrix(&["a b", "c"], &["c", "a b", "z"]).unwrap();
        assert_eq!((m.rows(), m.cols()), (2, 3));
        assert!((m.get(0, 1).unwrap() - 1.0).abs() < 1e-6);
        assert!((m.get(1, 0).unwrap() - 1.0).abs() < 1e-6);
        assert_eq!(m.get(1, 2), Some(0.0));
        let empty = lexical_matrix(&[], &["x"]).unwrap();
        assert_eq!((empty.rows(), empty.cols()), (0, 1));
    }
}
