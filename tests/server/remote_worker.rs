//! The worker with an openai engine against a real `anchorscope serve`: cancellation mid-job,
//! and the model judge's votes through `/v1/chat/completions`.

use crate::remote_support;

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anchorscope::engine::remote::{EngineKind, EngineSettings};
use anchorscope::engine::worker::{self, WorkerConfig};
use anchorscope::engine::{EngineCommand, EngineEvent, Job};
use anchorscope::trace::{LabelValue, SamplerSettings};

use remote_support::*;

fn engine(port: u16) -> EngineSettings {
    EngineSettings {
        kind: EngineKind::Openai,
        url: Some(format!("http://127.0.0.1:{port}")),
        model: Some(SERVED.into()),
        concurrency: 1,
        n_per_request: 1,
        max_retries: 1,
        ..EngineSettings::default()
    }
}

#[test]
fn a_cancel_stops_the_job_and_keeps_only_whole_rollouts() {
    let server = Server::start(&["--fault-delay-ms", "200"], &[]);
    let dir = tempfile::tempdir().unwrap();
    let path = write_trace(dir.path());
    let trace = tiny_trace();
    let (tx, rx) = mpsc::channel();
    let handle = worker::spawn(
        WorkerConfig {
            embedder: false,
            engine: engine(server.port),
            ..WorkerConfig::default()
        },
        move |e| {
            let _ = tx.send(e);
        },
    );
    let job = Job {
        id: 7,
        trace: Arc::new(trace),
        store_path: store_of(&path),
        positions: vec![0, 1],
        n: 20,
        sampler: SamplerSettings {
            max_new_tokens: 8,
            ..SamplerSettings::default()
        },
        adaptive: None,
    };
    handle.sender.send(EngineCommand::Submit(job)).unwrap();
    let mut reported = 0;
    let mut cancelled_at = None;
    let finished = loop {
        let event = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the worker answers");
        match event {
            EngineEvent::Rollout { .. } => {
                reported += 1;
                if cancelled_at.is_none() {
                    handle.sender.send(EngineCommand::Cancel(7)).unwrap();
                    cancelled_at = Some(Instant::now());
                }
            }
            EngineEvent::Finished { job, cancelled } => break (job, cancelled),
            EngineEvent::Error { message, .. } => panic!("error: {message}"),
            _ => {}
        }
    };
    assert_eq!(finished, (7, true));
    let waited = cancelled_at.expect("a rollout arrived").elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "the cancel took {waited:?}"
    );
    let all = stored(&path);
    assert_eq!(
        all.len(),
        reported,
        "every reported rollout is stored, nothing more"
    );
    assert!(all.len() < 40);
    // Late replies of the cancelled job are dropped, never stored: once the worker has shut
    // down (its thread joined, the only writer of the store), the store holds exactly what
    // was reported.
    handle.shutdown();
    assert_eq!(stored(&path).len(), reported);
}

#[test]
fn the_model_judge_votes_through_the_server_and_records_its_evidence() {
    let server = LongServer::start();
    let dir = tempfile::tempdir().unwrap();
    let trace = write_trace(dir.path());
    write_config(
        dir.path(),
        "[judge]\nenabled = true\nvotes = 3\nthreshold = 0.5\nmax_tokens = 24\n",
    );
    let o = analyze(
        dir.path(),
        &trace,
        server.port,
        &["--positions", "2", "-n", "2"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let all = stored(&trace);
    assert_eq!(all.len(), 2);
    // Three chat requests' worth of votes per rollout reached the server (n = 3 each).
    let chats = server
        .log()
        .iter()
        .filter(|l| l.starts_with("POST /v1/chat/completions 200"))
        .count();
    assert_eq!(chats, 2, "{:?}", server.log());
    for r in &all {
        let label = &r.labels["alignment_faking"];
        assert_eq!(label.classifier, "af-model-judge");
        let evidence = label.evidence.as_deref().unwrap();
        assert!(evidence.starts_with("judge: "), "{evidence}");
        assert_eq!(evidence.matches("\nvote ").count(), 3, "{evidence}");
        // A random-weight model does not write the JSON verdict: its votes are invalid, and
        // the label is invalid rather than a guess.
        assert!(evidence.contains("0/0 valid votes"), "{evidence}");
        assert!(evidence.contains("3 invalid"), "{evidence}");
        assert_eq!(label.value, LabelValue::Invalid, "{evidence}");
    }
    let manifest = std::fs::read_to_string(trace.with_extension("rollouts.manifest.json")).unwrap();
    assert!(manifest.contains("af-model-judge"), "{manifest}");
}

#[test]
fn label_runs_both_judges_through_the_server_side_by_side() {
    let server = LongServer::start();
    let dir = tempfile::tempdir().unwrap();
    let trace = write_trace(dir.path());
    write_config(
        dir.path(),
        &format!(
            "[judge]\nenabled = true\nurl = \"http://127.0.0.1:{}\"\nmodel = \"{SERVED}\"\n\
             votes = 2\nmax_tokens = 24\n",
            server.port
        ),
    );
    let o = command(dir.path(), &["label", "--json", trace.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let labels = &list[0]["labels"];
    assert_eq!(labels["alignment_faking"]["classifier"], "af-rules");
    let model = &labels["alignment_faking (af-model-judge)"];
    assert_eq!(model["classifier"], "af-model-judge");
    assert!(
        model["evidence"].as_str().unwrap().starts_with("judge: "),
        "{model}"
    );
    let chats = server
        .log()
        .iter()
        .filter(|l| l.starts_with("POST /v1/chat/completions 200"))
        .count();
    assert_eq!(chats, 1, "one request with n = 2 votes: {:?}", server.log());
}
