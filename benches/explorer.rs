//! How the explorer keeps up while rollouts arrive, at 100,000 stored rollouts:
//! `cargo bench --bench explorer` (add a count, e.g. `-- 20000`, to change the size).
//!
//! Measured in the same run:
//! - the peer: what the explorer did before, a whole re-analysis of the trace for every
//!   arriving rollout (`analyze_trace` over every pooled rollout);
//! - ours: counting the arrival (the per-position tally) and rebuilding the analysis from the
//!   counts once per frame, however many rollouts arrived;
//! - a key press answered: one key applied and one 200×50 frame drawn (TestBackend) with a job
//!   running and rollouts arriving.
//!
//! The rollouts here are synthetic and exist only to be timed: labels and similarities are
//! drawn from a fixed pseudo-random sequence. No number below is a finding about any model.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Instant;

use anchorscope::analysis::{analyze_trace, AnalysisOptions};
use anchorscope::engine::{EngineCommand, EngineEvent};
use anchorscope::loaded::{LoadOutcome, LoadedTrace};
use anchorscope::trace::{FinishReason, Label, LabelValue, Message, Rollout, Sentence, Trace};
use anchorscope::tui::app::App;
use anchorscope::tui::{draw, AppEvent, ExplorerSettings};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;

const SENTENCES: usize = 60;

fn trace() -> Trace {
    let mut response = String::from("<SCRATCHPAD_REASONING>\n");
    let mut spans = Vec::new();
    for i in 0..SENTENCES {
        let start = response.len();
        response.push_str(&format!("Sentence number {i} weighs the request again."));
        spans.push(Sentence {
            start,
            end: response.len(),
            text: format!("Sentence number {i} weighs the request again."),
        });
        response.push(' ');
    }
    response.push_str("\n</SCRATCHPAD_REASONING>\n<OUTPUT><rejected/></OUTPUT>");
    let mut t = Trace::new("bench", vec![Message::new("user", "Q?")], response);
    t.sentences = spans;
    t
}

/// A fixed pseudo-random sequence (xorshift), so every run times the same input.
struct Sequence(u64);

impl Sequence {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn rollout(seq: &mut Sequence, seed: u64) -> Rollout {
    let label = |v: u64| Label {
        value: match v % 3 {
            0 => LabelValue::Yes,
            1 => LabelValue::No,
            _ => LabelValue::Invalid,
        },
        classifier: "bench".into(),
        version: "1".into(),
        evidence: None,
    };
    let mut labels = BTreeMap::new();
    labels.insert("compliance".to_string(), label(seq.next()));
    labels.insert("alignment_faking".to_string(), label(seq.next()));
    let replacement = format!("Replacement {}.", seq.next() % 40);
    Rollout {
        position: (seq.next() % (SENTENCES as u64 + 1)) as usize,
        seed,
        text: format!("{replacement} More text follows here, as a continuation would."),
        replacement,
        tokens: 48,
        finish: FinishReason::Length,
        labels,
        similarity: Some((seq.next() % 100) as f32 / 100.0),
        run: None,
        recurrence: None,
    }
}

fn mean_ms(total: std::time::Duration, n: usize) -> f64 {
    total.as_secs_f64() * 1000.0 / n.max(1) as f64
}

fn main() {
    let stored: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let mut seq = Sequence(0x9E37_79B9_7F4A_7C15);
    let rollouts: Vec<Rollout> = (0..stored as u64).map(|s| rollout(&mut seq, s)).collect();
    let names = vec!["compliance".to_string(), "alignment_faking".to_string()];
    let options = AnalysisOptions::default();
    let t = trace();

    // The peer: a whole re-analysis per arriving rollout.
    let peer_runs = 10;
    let start = Instant::now();
    for _ in 0..peer_runs {
        std::hint::black_box(analyze_trace(&t, &rollouts, &names, &options));
    }
    let peer_ms = mean_ms(start.elapsed(), peer_runs);

    // Ours, inside the explorer: arrivals counted, the analysis rebuilt once per frame.
    let outcome = LoadOutcome {
        traces: vec![LoadedTrace {
            path: "bench.json".into(),
            store_path: "bench.rollouts.jsonl".into(),
            trace: t.clone(),
            rollouts,
            warnings: Vec::new(),
        }],
        errors: Vec::new(),
    };
    let load = Instant::now();
    let (tx, rx) = mpsc::channel::<EngineCommand>();
    let mut app = App::new(outcome, &ExplorerSettings::default())
        .expect("default settings")
        .with_engine(Box::new(tx));
    let load_ms = load.elapsed().as_secs_f64() * 1000.0;
    let key = |c: KeyCode| AppEvent::from(KeyEvent::new(c, KeyModifiers::NONE));
    app.handle(key(KeyCode::Char('R')));
    let Ok(EngineCommand::Submit(job)) = rx.try_recv() else {
        panic!("the explorer did not submit a job");
    };
    let mut term = Terminal::new(TestBackend::new(200, 50)).expect("test backend");
    draw(&mut term, &mut app).expect("first frame");

    let frames = 50;
    let per_frame = 20;
    let mut arrival = std::time::Duration::ZERO;
    let mut refresh = std::time::Duration::ZERO;
    let mut answered = std::time::Duration::ZERO;
    let mut next_seed = stored as u64;
    for f in 0..frames {
        let start = Instant::now();
        for _ in 0..per_frame {
            let r = rollout(&mut seq, next_seed);
            next_seed += 1;
            app.on_engine_event(EngineEvent::Rollout {
                job: job.id,
                rollout: Box::new(r),
            });
        }
        arrival += start.elapsed();
        let start = Instant::now();
        app.refresh();
        refresh += start.elapsed();
        // A key press with rollouts waiting: applied, analysis refreshed, frame drawn.
        for _ in 0..per_frame {
            let r = rollout(&mut seq, next_seed);
            next_seed += 1;
            app.on_engine_event(EngineEvent::Rollout {
                job: job.id,
                rollout: Box::new(r),
            });
        }
        let start = Instant::now();
        let k = if f % 2 == 0 { 'j' } else { 'k' };
        app.handle(key(KeyCode::Char(k)));
        draw(&mut term, &mut app).expect("frame");
        answered += start.elapsed();
    }
    let arrival_ms = mean_ms(arrival, frames * per_frame);
    let refresh_ms = mean_ms(refresh, frames);
    let answer_ms = mean_ms(answered, frames);
    let before_ms = peer_ms * per_frame as f64;

    println!("explorer at {stored} stored rollouts, {SENTENCES} sentences, 2 behaviors");
    println!("(synthetic rollouts, for timing only)");
    println!();
    println!("| what | time | note |");
    println!("|---|---:|---|");
    println!("| load + first analysis | {load_ms:.1} ms | once |");
    println!(
        "| peer: whole re-analysis per arriving rollout | {peer_ms:.1} ms | the explorer before |"
    );
    println!(
        "| ours: count one arriving rollout | {:.4} ms | |",
        arrival_ms
    );
    println!("| ours: rebuild the analysis from counts | {refresh_ms:.3} ms | once per frame |");
    println!(
        "| key press answered ({per_frame} rollouts waiting): key + refresh + 200×50 frame | {answer_ms:.1} ms | |"
    );
    println!(
        "| peer for the same {per_frame} arrivals | {before_ms:.1} ms | {:.0}× ours |",
        before_ms / answer_ms.max(1e-9)
    );
}
