//! Loading arbitrary bytes never panics: every input gives traces or errors that name the file.

use std::fs;

use anchorscope::loaded::load_path;
use anchorscope::trace::split::SplitOptions;
use proptest::prelude::*;

/// JSON-shaped text assembled from pieces of the supported formats, so the generator reaches
/// past the syntax check into the structural code paths.
fn jsonish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(",".to_string()),
        Just(":".to_string()),
        Just("\n".to_string()),
        Just("\"messages\"".to_string()),
        Just("\"role\"".to_string()),
        Just("\"assistant\"".to_string()),
        Just("\"user\"".to_string()),
        Just("\"content\"".to_string()),
        Just("\"reasoning_content\"".to_string()),
        Just("\"prompt\"".to_string()),
        Just("\"response\"".to_string()),
        Just("\"conversation\"".to_string()),
        Just("\"format\"".to_string()),
        Just("\"anchorscope-trace\"".to_string()),
        Just("\"version\"".to_string()),
        Just("\"sentences\"".to_string()),
        Just("\"start\"".to_string()),
        Just("\"end\"".to_string()),
        Just("\"<think>a. b</think>\"".to_string()),
        Just("\"é🦀\"".to_string()),
        Just("null".to_string()),
        Just("true".to_string()),
        Just("1".to_string()),
        Just("99999999999".to_string()),
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn loading_any_text_never_panics(text in jsonish(), jsonl in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(if jsonl { "x.jsonl" } else { "x.json" });
        fs::write(&path, &text).unwrap();
        match load_path(&path, &SplitOptions::default()) {
            Ok(outcome) => {
                for t in &outcome.traces {
                    for s in &t.trace.sentences {
                        prop_assert_eq!(t.trace.response.get(s.range()), Some(s.text.as_str()));
                    }
                }
                for e in &outcome.errors {
                    prop_assert!(e.to_string().contains("x.json"));
                }
            }
            Err(e) => prop_assert!(e.to_string().contains("x.json")),
        }
    }

    #[test]
    fn loading_any_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("y.json");
        fs::write(&path, &bytes).unwrap();
        let _ = load_path(&path, &SplitOptions::default());
    }
}
