//! `--engine openai` against a real `anchorscope serve` on loopback: rollouts stored with
//! labels, resumable top-ups, a 400 as a clear error, the API key never written anywhere, the
//! model check, and cancellation through the worker.

mod remote_support;

use remote_support::*;

#[test]
fn analyze_through_a_server_stores_n_rollouts_per_position_with_labels() {
    let server = Server::start(&[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let trace = write_trace(dir.path());
    let o = analyze(dir.path(), &trace, server.port, &["--positions", "0..=2", "-n", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rollouts = stored(&trace);
    assert_eq!(
        per_position(&rollouts).into_iter().collect::<Vec<_>>(),
        vec![(0, 3), (1, 3), (2, 3)]
    );
    assert_unique_seeds(&rollouts);
    for r in &rollouts {
        assert!(r.labels.contains_key("compliance"), "{r:?}");
        assert!(r.labels.contains_key("alignment_faking"), "{r:?}");
        assert!(r.tokens <= 12, "{r:?}");
    }
    // The run manifest says which engine and server produced them.
    let manifest = std::fs::read_to_string(trace.with_extension("rollouts.manifest.json")).unwrap();
    let m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(m["engine"], "openai");
    assert_eq!(m["server"], format!("http://127.0.0.1:{}", server.port));
    assert!(m["model"].as_str().unwrap().contains(SERVED), "{manifest}");
}
