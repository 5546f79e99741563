//! Bad plan files fail to load with `RuntimeError::InvalidPlan` naming the file and the
//! problem, never a panic: truncated, a flipped byte (checksum), a future format version,
//! not a plan at all, and a graph that breaks the structural rules.

use std::path::{Path, PathBuf};

use switchhead_compiler::import::{LoadOptions, load_model};
use switchhead_compiler::ir::{lower, materialize};
use switchhead_compiler::model::Weights;
use switchhead_compiler::passes::{PassManager, RunOptions};
use switchhead_compiler::plan::{PlanOptions, plan_graph, write_plan_file};
use switchhead_ops::plan::{FORMAT_VERSION, PlanGraph, PlanLayout, layout_weights, write_plan};
use switchhead_runtime::{RuntimeError, Session, SessionOptions};

/// The gated testdata model's weights (with the derived ones) and its plan graph.
fn gated_plan() -> (Weights, PlanGraph) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/models/gated");
    let model = load_model(&dir, &LoadOptions::default()).expect("load");
    let mut graph = lower(&model);
    PassManager::default()
        .run(&mut graph, RunOptions::default())
        .expect("passes");
    let opts = PlanOptions {
        panels: true,
        ..PlanOptions::default()
    };
    let weights = materialize(&graph, &model.weights).expect("derived weights");
    let plan = plan_graph(&graph, &weights, &opts).expect("plan");
    (weights, plan)
}

fn plan_bytes(tag: &str) -> (PathBuf, Vec<u8>) {
    let (weights, plan) = gated_plan();
    let path = temp(tag);
    write_plan_file(&plan, &weights, &path).expect("write");
    let bytes = std::fs::read(&path).expect("read back");
    (path, bytes)
}

fn temp(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("plan-err-{tag}-{}.shplan", std::process::id()))
}

/// Loads `bytes` as a plan file; returns the error's message (which must name the file).
fn load_error(path: &Path, bytes: &[u8]) -> String {
    std::fs::write(path, bytes).expect("write");
    let err = Session::load(path, SessionOptions::default()).expect_err("must not load");
    let _ = std::fs::remove_file(path);
    assert!(matches!(err, RuntimeError::InvalidPlan { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    println!("{msg}");
    msg
}

#[test]
fn a_good_plan_loads() {
    let (path, _) = plan_bytes("good");
    let s = Session::load(&path, SessionOptions::default()).expect("load");
    assert_eq!(s.backend_name(), "native");
    let _ = std::fs::remove_file(path);
}

#[test]
fn truncated() {
    let (path, bytes) = plan_bytes("truncated");
    for len in [bytes.len() - 1, bytes.len() / 2, 70, 40, 12] {
        let msg = load_error(&path, &bytes[..len]);
        assert!(msg.contains("truncated"), "{len}: {msg}");
    }
}

#[test]
fn flipped_byte_fails_the_checksum() {
    let (path, bytes) = plan_bytes("flip");
    for at in [bytes.len() / 2, 100, bytes.len() - 9, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x10;
        let msg = load_error(&path, &bad);
        assert!(msg.contains("checksum mismatch"), "byte {at}: {msg}");
    }
}

#[test]
fn future_version() {
    let (path, mut bytes) = plan_bytes("future");
    let next = FORMAT_VERSION + 1;
    bytes[8..12].copy_from_slice(&next.to_le_bytes());
    let msg = load_error(&path, &bytes);
    assert!(
        msg.contains(&format!(
            "format version {next} was written by a newer switchhead"
        )),
        "{msg}"
    );
}

#[test]
fn not_a_plan() {
    let path = temp("notaplan");
    let msg = load_error(&path, b"this is not a plan, just some text\n");
    assert!(msg.contains("not a switchhead plan"), "{msg}");
    let msg = load_error(&path, b"");
    assert!(msg.contains("not a switchhead plan"), "{msg}");
}

#[test]
fn trailing_data() {
    let (path, mut bytes) = plan_bytes("trailing");
    bytes.extend_from_slice(&[0u8; 16]);
    let msg = load_error(&path, &bytes);
    assert!(msg.contains("trailing data"), "{msg}");
}

#[test]
fn graph_breaking_the_rules_is_rejected_with_a_valid_checksum() {
    let (_, plan) = gated_plan();
    let mut bad = plan.clone();
    bad.nodes[0].inputs[0] = bad.n_values + 5;
    let msg = load_error(&temp("graph"), &zero_weights(&bad));
    assert!(
        msg.contains("bad graph") && msg.contains("before it is defined"),
        "{msg}"
    );
}

/// A weight stored in panels may only feed the slots that stream panels; one read anywhere
/// else (here the embedding table, which keeps its 2-D shape and byte count) is rejected.
#[test]
fn panels_weight_in_a_plain_slot_is_rejected() {
    let (_, plan) = gated_plan();
    let mut bad = plan.clone();
    let table = bad.nodes[0].inputs[1];
    let w = bad
        .weights
        .iter_mut()
        .find(|w| w.value == table)
        .expect("table");
    assert_eq!(w.shape.len(), 2);
    w.layout = PlanLayout::Panels;
    w.nbytes = (w.stored_len() * 4) as u64;
    layout_weights(&mut bad.weights);
    let msg = load_error(&temp("panels"), &zero_weights(&bad));
    assert!(msg.contains("stored in panels"), "{msg}");
}

/// `expert_panels` is for rank-3 expert stacks: on a projection weight it is rejected by name.
#[test]
fn expert_panels_on_a_matrix_is_rejected() {
    let (_, plan) = gated_plan();
    let mut bad = plan.clone();
    let w = bad
        .weights
        .iter_mut()
        .find(|w| w.layout == PlanLayout::Panels)
        .expect("a panels weight");
    w.layout = PlanLayout::ExpertPanels;
    let name = w.name.clone();
    let msg = load_error(&temp("expert-panels"), &zero_weights(&bad));
    assert!(
        msg.contains("layout expert_panels does not apply") && msg.contains(&name),
        "{msg}"
    );
}

/// An all-merged attention computes q, k and the routers from xq alone: one whose xkv is
/// another value (here the embedding, same shape) is rejected at load, naming the node.
#[test]
fn merged_attention_with_two_inputs_is_rejected() {
    let (_, plan) = gated_plan();
    let mut bad = plan.clone();
    let embedded = bad.nodes[0].outputs[0];
    let attn = bad
        .nodes
        .iter_mut()
        .find(|n| n.name.ends_with(".attn"))
        .expect("an attention node");
    assert_ne!(attn.inputs[1], embedded);
    attn.inputs[1] = embedded;
    let msg = load_error(&temp("merged"), &zero_weights(&bad));
    assert!(
        msg.contains("needs xq and xkv to be the same value") && msg.contains(".attn"),
        "{msg}"
    );
}

/// The file of `plan` with every weight's bytes zero.
fn zero_weights(plan: &PlanGraph) -> Vec<u8> {
    let mut bytes = Vec::new();
    write_plan(&mut bytes, plan, |w, out| {
        out.write_all(&vec![0u8; w.nbytes as usize])
    })
    .expect("write");
    bytes
}
