//! An ONNX file loaded by the runtime on the CPU backend: our checks and plan-graph metadata
//! reading before tract, then tract's own loading; a session that loads runs one forward.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use switchhead_runtime::{BackendKind, Session, SessionOptions, TokenBatch};

fuzz_target!(|data: &[u8]| {
    let path = common::write("model.onnx", data);
    let _ = switchhead_runtime::onnx::verify_embedded_plan(&path);
    let options = SessionOptions {
        threads: Some(1),
        backend: BackendKind::Cpu,
        ..SessionOptions::default()
    };
    if let Ok(session) = Session::load(&path, options) {
        let _ = session.logits(&TokenBatch::single(vec![1, 2]));
    }
});
