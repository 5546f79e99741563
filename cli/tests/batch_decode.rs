//! Continuous batching: batch-1 decoders of one session, each at its own position, stepped
//! together with `Decoder::step_each`, give what each gives alone, while sequences join and
//! leave between steps; on the native executor (RoPE plans: one shared pass) and where
//! the backend steps each in turn (XL plans, ONNX on tract).

mod common;

use common::{compile_plan, max_rel_err, model_dir};
use switchhead_compiler::onnx::WeightDType;
use switchhead_runtime::{Decoder, RuntimeError, Session, SessionOptions};

/// Prompts of different lengths (so every sequence sits at its own position).
fn prompts() -> Vec<Vec<i64>> {
    [1usize, 3, 7, 12, 20]
        .iter()
        .enumerate()
        .map(|(s, &n)| (0..n).map(|i| ((i * 31 + s * 17) % 251) as i64).collect())
        .collect()
}

/// Greedy next token.
fn argmax(logits: &[f32]) -> i64 {
    let best = logits
        .iter()
        .enumerate()
        .fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
    best.0 as i64
}

/// Each prompt alone: the logits of its `steps` greedy steps (after the prompt's own).
fn alone(session: &Session, context: Option<usize>, steps: usize) -> Vec<Vec<Vec<f32>>> {
    prompts()
        .iter()
        .map(|p| {
            let mut d = session.decoder().expect("decoder").with_context(context);
            let mut logits = vec![d.feed(p).expect("prompt")];
            for _ in 0..steps {
                let next = argmax(logits.last().expect("logits"));
                logits.push(d.feed(&[next]).expect("step"));
            }
            logits
        })
        .collect()
}

/// The same, all sequences in shared steps; sequence s joins at step `s` (prefilled alone
/// then) and leaves once it has made `steps` tokens.
fn together(session: &Session, context: Option<usize>, steps: usize) -> Vec<Vec<Vec<f32>>> {
    let prompts = prompts();
    let mut decoders: Vec<Decoder<'_>> = Vec::new();
    let mut logits: Vec<Vec<Vec<f32>>> = Vec::new();
    for step in 0.. {
        if let Some(p) = prompts.get(step) {
            let mut d = session.decoder().expect("decoder").with_context(context);
            logits.push(vec![d.feed(p).expect("prompt")]);
            decoders.push(d);
        }
        let active: Vec<usize> = (0..decoders.len())
            .filter(|&s| logits[s].len() <= steps)
            .collect();
        if active.is_empty() {
            break;
        }
        let tokens: Vec<i64> = active
            .iter()
            .map(|&s| argmax(logits[s].last().expect("logits")))
            .collect();
        let mut refs: Vec<&mut Decoder<'_>> = decoders
            .iter_mut()
            .enumerate()
            .filter(|(s, _)| active.contains(s))
            .map(|(_, d)| d)
            .collect();
        let out = Decoder::step_each(&mut refs, &tokens).expect("shared step");
        assert_eq!(out.len(), active.len());
        for (&s, row) in active.iter().zip(out) {
            logits[s].push(row);
        }
    }
    logits
}

fn check(session: &Session, context: Option<usize>, what: &str) {
    let steps = 12;
    let (a, t) = (
        alone(session, context, steps),
        together(session, context, steps),
    );
    assert_eq!(a.len(), t.len());
    for (s, (a, t)) in a.iter().zip(&t).enumerate() {
        assert_eq!(a.len(), t.len(), "{what}: sequence {s}");
        for (i, (a, t)) in a.iter().zip(t).enumerate() {
            let err = max_rel_err(t, a);
            assert!(
                err <= 1e-5,
                "{what}: sequence {s} step {i}: max rel err {err}"
            );
            assert_eq!(
                argmax(t),
                argmax(a),
                "{what}: sequence {s} step {i}: greedy token"
            );
        }
    }
}

fn native(plan: &std::path::Path) -> Session {
    let opts = SessionOptions {
        threads: Some(2),
        ..Default::default()
    };
    Session::load(plan, opts).expect("load")
}

#[test]
fn shared_steps_equal_lone_steps_on_the_native_executor() {
    let plan = compile_plan("rope", WeightDType::F32, None, "batch-rope");
    let session = native(&plan);
    check(&session, None, "rope");
    // A short context: sequences restart their caches (alone) while the others share.
    check(&session, Some(16), "rope, context 16");
    let _ = std::fs::remove_file(plan);
    for name in ["gated", "dense"] {
        let plan = compile_plan(name, WeightDType::F32, None, "batch");
        check(&native(&plan), None, name);
        let _ = std::fs::remove_file(plan);
    }
}

#[test]
fn xl_decoders_step_in_turn_with_the_same_results() {
    let plan = compile_plan("xl", WeightDType::F32, Some(16), "batch-xl");
    check(&native(&plan), None, "xl");
    let _ = std::fs::remove_file(plan);
}

#[test]
fn step_each_checks_its_inputs() {
    let plan = compile_plan("rope", WeightDType::F32, None, "batch-errors");
    let session = native(&plan);
    let (mut a, mut b) = (session.decoder().expect("a"), session.decoder().expect("b"));
    let err = Decoder::step_each(&mut [&mut a, &mut b], &[1]);
    assert!(
        matches!(err, Err(RuntimeError::ShapeMismatch { .. })),
        "{err:?}"
    );
    let err = Decoder::step_each(&mut [&mut a, &mut b], &[1, 100_000]);
    assert!(err.is_err(), "a token outside the vocabulary: {err:?}");
    let mut wide = session.decoder_batch(2).expect("batch 2");
    let err = Decoder::step_each(&mut [&mut a, &mut wide], &[1, 2]);
    assert!(
        matches!(err, Err(RuntimeError::ShapeMismatch { .. })),
        "{err:?}"
    );
    assert_eq!((a.position(), b.position()), (0, 0), "nothing fed on error");
    let _ = std::fs::remove_file(plan);
    let _ = model_dir("rope");
}
