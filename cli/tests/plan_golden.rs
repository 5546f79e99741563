//! The native executor on `.shplan` files the compiler writes, for every testdata model:
//! logits match every golden file to a max relative error of 1e-4, XL memory over two
//! chunks included, on one and two threads. An f16 plan matches the tract backend on the same
//! model emitted as f16 ONNX.

use std::path::{Path, PathBuf};

use switchhead_compiler::import::{LoadOptions, load_model};
use switchhead_compiler::ir::lower;
use switchhead_compiler::onnx::{EmitOptions, WeightDType, emit, write};
use switchhead_compiler::passes::{PassManager, RunOptions};
use switchhead_compiler::plan::{PlanOptions, plan_graph, write_plan_file};
use switchhead_compiler::tensor_io::{chunk_names, parse, read_bytes, read_f32, read_tokens};
use switchhead_runtime::{Session, SessionOptions, TokenBatch, XlMemory};

const TOL: f32 = 1e-4;

fn model_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/models")
        .join(name)
}

fn compile(name: &str, dtype: WeightDType) -> PathBuf {
    let model = load_model(&model_dir(name), &LoadOptions::default()).expect("load");
    let mut graph = lower(&model);
    PassManager::default()
        .run(&mut graph, RunOptions::default())
        .expect("passes");
    let opts = PlanOptions {
        dtype,
        chunk_size: model.config.chunk_size,
    };
    let plan = plan_graph(&graph, &model.weights, &opts).expect("plan");
    let out = std::env::temp_dir().join(format!(
        "plan-golden-{name}-{dtype:?}-{}.shplan",
        std::process::id()
    ));
    write_plan_file(&plan, &model.weights, &out).expect("write");
    out
}

fn max_rel_err(ours: &[f32], golden: &[f32]) -> f32 {
    assert_eq!(ours.len(), golden.len(), "logits length");
    let scale = golden.iter().fold(0f32, |m, v| m.max(v.abs()));
    ours.iter()
        .zip(golden)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale
}

/// Every golden chunk of `name` through `session`: (label, logits, golden logits).
fn run_goldens(name: &str, session: &Session) -> Vec<(String, Vec<f32>, Vec<f32>)> {
    let mut out = Vec::new();
    for golden in ["golden_long", "golden_short", "golden_mem"] {
        let file = model_dir(name).join(format!("{golden}.safetensors"));
        if !file.exists() {
            continue;
        }
        let bytes = read_bytes(&file).expect("golden");
        let st = parse(&file, &bytes).expect("golden");
        let mut memory: Option<XlMemory> = None;
        for chunk in chunk_names(&st, "tokens") {
            let t = read_tokens(&file, &st, &chunk).expect("tokens");
            let ids = (0..t.batch())
                .flat_map(|b| t.sequence(b).to_vec())
                .collect();
            let tokens = TokenBatch::new(t.batch(), t.seq(), ids).expect("batch");
            let logits = match session.is_xl() {
                true => {
                    let (logits, next) = session
                        .forward_chunk(&tokens, memory.as_ref())
                        .expect("chunk");
                    memory = Some(next);
                    logits
                }
                false => session.logits(&tokens).expect("logits"),
            };
            let want = read_f32(&file, &st, &chunk.replace("tokens", "logits")).expect("logits");
            out.push((
                format!("{golden} {chunk}"),
                logits.data,
                want.data().to_vec(),
            ));
        }
    }
    out
}

/// The worst max relative error of `session` over the golden files of `name`.
fn worst_error(name: &str, session: &Session) -> f32 {
    let mut worst = 0f32;
    for (label, ours, golden) in run_goldens(name, session) {
        let err = max_rel_err(&ours, &golden);
        println!("{name} {label}: max rel err {err:.3e}");
        worst = worst.max(err);
    }
    worst
}

fn check(name: &str) {
    let path = compile(name, WeightDType::F32);
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
    let proto = emit(&lower(&model), &model.weights, &opts).expect("emit");
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
