//! One `Session` shared by eight threads: every thread's logits and decoded steps are the same
//! bytes as the same calls made one after another (nothing in a session is per-call state that
//! concurrent calls could mix up), on the native plan and on ONNX (tract), for a RoPE and an XL
//! model.

mod common;

use std::path::PathBuf;

use common::{TOL, compile_plan, max_rel_err, model_dir, run_goldens};
use switchhead_compiler::import::{LoadOptions, load_model};
use switchhead_compiler::ir::lower;
use switchhead_compiler::onnx::{EmitOptions, WeightDType, emit, write};
use switchhead_runtime::{Session, SessionOptions};

const THREADS: usize = 8;

/// The runtime promises this: a session can be put in an `Arc` and called from any thread.
#[test]
fn session_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Session>();
}

#[test]
fn eight_threads_on_one_plan_session_match_sequential_calls() {
    for name in ["rope", "switchall"] {
        let plan = compile_plan(name, WeightDType::F32, None, "shared-session");
        check_shared(name, plan);
    }
}

/// ONNX with the KV cache for the RoPE model, so that both decode.
#[test]
fn eight_threads_on_one_onnx_session_match_sequential_calls() {
    for name in ["rope", "xl"] {
        let model = load_model(&model_dir(name), &LoadOptions::default()).expect("load");
        let opts = EmitOptions {
            kv_cache: name == "rope",
            chunk_size: model.config.chunk_size,
            ..Default::default()
        };
        let proto = emit(&lower(&model), &model.weights, &opts).expect("emit");
        let path =
            std::env::temp_dir().join(format!("shared-session-{name}-{}.onnx", std::process::id()));
        write(proto, &path).expect("write");
        check_shared(name, path);
    }
}

/// Golden runs and a short decode, sequentially and then from eight threads at once on one
/// session (each thread its own XL memory and decoder), compared bit for bit.
fn check_shared(name: &str, path: PathBuf) {
    let session = Session::load(&path, SessionOptions::default()).expect("session");
    let sequential = work(name, &session);
    for (label, ours, golden) in &sequential.0 {
        let err = max_rel_err(ours, golden);
        assert!(err <= TOL, "{name} {label}: max rel err {err}");
    }
    let results: Vec<Work> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| s.spawn(|| work(name, &session)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    for (t, result) in results.iter().enumerate() {
        for (i, ((label, seq, _), (_, par, _))) in sequential.0.iter().zip(&result.0).enumerate() {
            assert!(
                bits(seq) == bits(par),
                "{name} {label} ({i}): thread {t} differs from the sequential call"
            );
        }
        assert!(
            bits(&sequential.1) == bits(&result.1),
            "{name}: thread {t}'s decoded logits differ from the sequential decode"
        );
    }
    let _ = std::fs::remove_file(path);
}

/// (every golden chunk's (label, logits, golden), the logits of a 6-token decode)
struct Work(Vec<(String, Vec<f32>, Vec<f32>)>, Vec<f32>);

fn work(name: &str, session: &Session) -> Work {
    let goldens = run_goldens(name, session);
    let mut decoder = session.decoder().expect("decoder");
    let mut decoded = decoder.feed(&[3, 1, 4]).expect("prompt");
    for token in [1, 5, 9] {
        decoded.extend(decoder.feed(&[token]).expect("step"));
    }
    Work(goldens, decoded)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}
