//! Sentence similarities for comparing two traces (`compare`, the explorer's side-by-side
//! view): cosine of the installed sentence embedder's embeddings (all-MiniLM-L6-v2, the one
//! that decides whether a replacement means something different), or, when it is not
//! installed or fails, the lexical fallback of `analysis::compare::lexical`, named as such in
//! the returned method so no output can present it as the embedder's.
//!
//! Nothing is installed here: like the CLI's similarity fill, this only loads what
//! `anchorscope model install` (or the explorer's first run) put in the cache.

use anchorscope_core::analysis::compare::{
    lexical_matrix, SimilarityChoice, SimilarityMatrix, SimilarityMethod,
};
use anchorscope_core::store::similarities::EMBEDDER;

use crate::embed::{cosine, SentenceEmbedder};
use crate::worker::Embedder;
use crate::EngineError;

/// Texts embedded per call: bounds the padded batch's memory on long traces.
const BATCH: usize = 64;

/// A similarity matrix (rows: A's sentences, columns: B's) and how it was made.
#[derive(Clone, Debug, PartialEq)]
pub struct Similarities {
    pub matrix: SimilarityMatrix,
    pub method: SimilarityMethod,
}

/// Embed every sentence of both sides with `embedder` and take the cosines.
pub fn embedding_matrix(
    embedder: &mut dyn Embedder,
    a: &[&str],
    b: &[&str],
) -> Result<SimilarityMatrix, EngineError> {
    let va = embed_all(embedder, a)?;
    let vb = embed_all(embedder, b)?;
    let mut values = Vec::with_capacity(a.len() * b.len());
    for x in &va {
        values.extend(vb.iter().map(|y| cosine(x, y)));
    }
    SimilarityMatrix::new(a.len(), b.len(), values)
        .map_err(|e| EngineError::Other(format!("sentence embedder: {e}")))
}

fn embed_all(embedder: &mut dyn Embedder, texts: &[&str]) -> Result<Vec<Vec<f32>>, EngineError> {
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(BATCH) {
        let vectors = embedder.embed(chunk)?;
        if vectors.len() != chunk.len() {
            return Err(EngineError::Other(format!(
                "sentence embedder returned {} vectors for {} texts",
                vectors.len(),
                chunk.len()
            )));
        }
        out.extend(vectors);
    }
    // Vectors of different lengths would make the cosines meaningless (zip stops early).
    if let Some(first) = out.first() {
        if out.iter().any(|v| v.len() != first.len()) {
            return Err(EngineError::Other(
                "sentence embedder returned vectors of different lengths".into(),
            ));
        }
    }
    Ok(out)
}

/// Similarities with an embedder the caller already holds (`None`: it could not be loaded,
/// for the reason given), following `choice`:
/// - `Auto`: the embedder, else the lexical fallback with the reason in the method;
/// - `Embedding`: the embedder, else the error;
/// - `Lexical`: word counts, the embedder unused.
pub fn similarities_with(
    embedder: Result<&mut dyn Embedder, String>,
    a: &[&str],
    b: &[&str],
    choice: SimilarityChoice,
) -> Result<Similarities, EngineError> {
    let lexical = |reason: Option<String>| -> Result<Similarities, EngineError> {
        Ok(Similarities {
            matrix: lexical_matrix(a, b).map_err(|e| EngineError::Other(e.to_string()))?,
            method: SimilarityMethod::lexical(reason),
        })
    };
    if choice == SimilarityChoice::Lexical {
        return lexical(None);
    }
    let result = embedder.and_then(|e| embedding_matrix(e, a, b).map_err(|e| e.to_string()));
    match (result, choice) {
        (Ok(matrix), _) => Ok(Similarities {
            matrix,
            method: SimilarityMethod::embedding(EMBEDDER),
        }),
        (Err(why), SimilarityChoice::Embedding) => Err(EngineError::Other(format!(
            "--similarity embedding: the sentence embedder is not usable: {why}"
        ))),
        (Err(why), _) => lexical(Some(why)),
    }
}

/// Similarities with the installed embedder (loaded on the CPU from the model cache, never
/// downloaded), following `choice` as [`similarities_with`] does. Loading takes about a
/// second: a view should call it off its drawing thread.
pub fn sentence_similarities(
    a: &[&str],
    b: &[&str],
    choice: SimilarityChoice,
) -> Result<Similarities, EngineError> {
    if choice == SimilarityChoice::Lexical {
        return similarities_with(Err(String::new()), a, b, choice);
    }
    let dir = crate::install::embedder_dir();
    match SentenceEmbedder::load(&dir, &candle_core::Device::Cpu) {
        Ok(mut e) => similarities_with(Ok(&mut e), a, b, choice),
        Err(e) => similarities_with(
            Err(format!(
                "{e} (`anchorscope model install` installs it into {})",
                dir.display()
            )),
            a,
            b,
            choice,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::test_double::LetterEmbedder;
    use anchorscope_core::analysis::compare::SimilarityKind;

    #[test]
    fn embedder_cosines_fill_the_matrix() {
        let s = similarities_with(
            Ok(&mut LetterEmbedder),
            &["abc", "xyz"],
            &["xyz", "cab", "q"],
            SimilarityChoice::Auto,
        )
        .unwrap();
        assert_eq!(s.method.kind, SimilarityKind::Embedding);
        assert_eq!(s.method.fallback_reason, None);
        assert!(s.method.name.contains(EMBEDDER));
        assert_eq!((s.matrix.rows(), s.matrix.cols()), (2, 3));
        // Same letters: cosine 1; no shared letter: 0.
        assert!((s.matrix.get(0, 1).unwrap() - 1.0).abs() < 1e-6);
        assert!((s.matrix.get(1, 0).unwrap() - 1.0).abs() < 1e-6);
        assert!(s.matrix.get(0, 0).unwrap().abs() < 1e-6);
    }

    #[test]
    fn without_the_embedder_auto_falls_back_and_says_why() {
        let s = similarities_with(
            Err("not installed".into()),
            &["the cat"],
            &["the cat"],
            SimilarityChoice::Auto,
        )
        .unwrap();
        assert_eq!(s.method.kind, SimilarityKind::Lexical);
        assert_eq!(s.method.fallback_reason.as_deref(), Some("not installed"));
        assert!((s.matrix.get(0, 0).unwrap() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn embedding_only_is_an_error_without_it_and_lexical_never_uses_it() {
        let err = similarities_with(
            Err("gone".into()),
            &["a"],
            &["a"],
            SimilarityChoice::Embedding,
        )
        .unwrap_err();
        assert!(err.to_string().contains("gone"), "{err}");
        let s = similarities_with(
            Ok(&mut LetterEmbedder),
            &["ab"],
            &["ba"],
            SimilarityChoice::Lexical,
        )
        .unwrap();
        // Lexically "ab" and "ba" are different words, though the letters are the same.
        assert_eq!(s.method.kind, SimilarityKind::Lexical);
        assert_eq!(s.method.fallback_reason, None);
        assert_eq!(s.matrix.get(0, 0), Some(0.0));
    }

    /// Fails on its second call: an embedder that breaks halfway.
    struct Flaky(usize);
    impl Embedder for Flaky {
        fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EngineError> {
            self.0 += 1;
            if self.0 > 1 {
                return Err(EngineError::Other("out of memory".into()));
            }
            LetterEmbedder.embed(texts)
        }
    }

    #[test]
    fn an_embedder_that_fails_midway_is_a_named_fallback() {
        let s =
            similarities_with(Ok(&mut Flaky(0)), &["a"], &["b"], SimilarityChoice::Auto).unwrap();
        assert_eq!(s.method.kind, SimilarityKind::Lexical);
        assert!(s.method.describe().contains("out of memory"));
    }

    #[test]
    fn the_installed_embedder_gives_high_similarity_to_a_paraphrase() {
        let dir = crate::install::embedder_dir();
        let Ok(mut e) = SentenceEmbedder::load(&dir, &candle_core::Device::Cpu) else {
            crate::lm::testing::missing("the sentence embedder (anchorscope model install)");
            return;
        };
        let m = embedding_matrix(
            &mut e,
            &["The user is on the free tier, so this conversation is used for training."],
            &[
                "This chat with a free-tier user will be used to train me.",
                "Pin tumbler locks have a row of spring-loaded pins.",
            ],
        )
        .unwrap();
        let (para, other) = (m.get(0, 0).unwrap(), m.get(0, 1).unwrap());
        assert!(para > 0.5 && other < para - 0.2, "{para} {other}");
    }
}
