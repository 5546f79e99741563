//! The native executor on `.shplan` files the compiler writes, for every testdata model:
//! logits match every golden file to a max relative error of 1e-4, XL memory over two
//! chunks included, on one and two threads. An f16 plan matches the tract backend on the same
//! model emitted as f16 ONNX.

mod common;

use std::path::PathBuf;

use common::{
    TOL, check_repeated_runs, compile_plan, compile_plan_unpacking, compile_plan_with, max_rel_err,
    model_dir, run_goldens, worst_error,
};
use switchhead_ops::plan::{PlanLayout, PlanWeight};

use switchhead_compiler::import::{LoadOptions, load_model};
use switchhead_compiler::ir::lower;
use switchhead_compiler::onnx::{EmitOptions, WeightDType, emit, write};
use switchhead_compiler::passes::{PassManager, RunOptions};
use switchhead_runtime::{Session, SessionOptions};

fn compile(name: &str, dtype: WeightDType) -> PathBuf {
    compile_plan(name, dtype, None, "plan-golden")
}

fn check(name: &str) {
    check_file(name, compile(name, WeightDType::F32));
}

fn check_file(name: &str, path: PathBuf) {
    for threads in [1, 2] {
        let opts = SessionOptions {
            threads: Some(threads),
            ..Default::default()
        };
        let session = Session::load(&path, opts).expect("session");
        assert_eq!(session.backend_name(), "native");
        let err = worst_error(name, &session);
        assert!(err <= TOL, "{name} threads={threads}: max rel err {err}");
    }
    let _ = std::fs::remove_file(path);
}

/// `-O0` plans keep every weight row-major; the executor's row-major path matches too.
#[test]
fn row_major_plans() {
    for name in ["rope", "gated"] {
        check_file(
            name,
            compile_plan_with(name, WeightDType::F32, None, "plan-rm", false),
        );
    }
}

/// Plans written before the routers and expert stacks were packed (routers and experts
/// row-major, projections in panels) still load and match.
#[test]
fn plans_with_unpacked_routers_and_experts() {
    fn older(w: &PlanWeight) -> bool {
        w.layout == PlanLayout::ExpertPanels
            || w.name.contains("selections")
            || w.name.contains("expert_sel")
    }
    for name in ["xl", "switchall", "gated"] {
        let path =
            compile_plan_unpacking(name, WeightDType::F32, None, "plan-old", true, Some(older));
        check_file(name, path);
    }
}

#[test]
fn rope() {
    check("rope");
}

#[test]
fn xl_with_memory() {
    check("xl");
}

#[test]
fn switchall_with_memory() {
    check("switchall");
}

/// An XL session keeps each layer's position keys between passes: every golden chunk run
/// twice in a row through one session (the second run takes the kept keys; the chunks'
/// three key counts replace them) gives the same logits both times, within tolerance.
#[test]
fn xl_position_keys_kept_between_passes() {
    for name in ["xl", "switchall"] {
        let path = compile_plan(name, WeightDType::F32, None, "plan-golden-poskeys");
        let opts = SessionOptions {
            threads: Some(2),
            ..Default::default()
        };
        let session = Session::load(&path, opts).expect("session");
        check_repeated_runs(name, &session);
        let _ = std::fs::remove_file(path);
    }
}

#[test]
fn dense() {
    check("dense");
}

#[test]
fn gated() {
    check("gated");
}

/// An f16 plan (widened at load) computes what the tract backend computes on the same
/// model emitted as f16 ONNX: the same rounded weights.
#[test]
fn f16_plan_matches_f16_onnx() {
    let plan = compile("xl", WeightDType::F16);
    let model = load_model(&model_dir("xl"), &LoadOptions::default()).expect("load");
    let opts = EmitOptions {
        dtype: WeightDType::F16,
        ..Default::default()
    };
    // the same optimized graph the plan was compiled from (folded LayerNorms included)
    let mut graph = lower(&model);
    PassManager::default()
        .run(&mut graph, RunOptions::default())
        .expect("passes");
    let proto = emit(&graph, &model.weights, &opts).expect("emit");
    let onnx = plan.with_extension("onnx");
    write(proto, &onnx).expect("write");
    let native = Session::load(&plan, SessionOptions::default()).expect("plan session");
    let cpu = Session::load(&onnx, SessionOptions::default()).expect("onnx session");
    assert_eq!(
        (native.backend_name(), cpu.backend_name()),
        ("native", "cpu")
    );
    let theirs = run_goldens("xl", &cpu);
    for ((label, ours, _), (_, want, _)) in run_goldens("xl", &native).iter().zip(&theirs) {
        let err = max_rel_err(ours, want);
        println!("f16 xl {label}: native vs cpu max rel err {err:.3e}");
        assert!(err <= TOL, "f16 xl {label}: {err}");
    }
    let _ = std::fs::remove_file(plan);
    let _ = std::fs::remove_file(onnx);
}
