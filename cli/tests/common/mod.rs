//! Helpers shared by the end-to-end tests: testdata paths, the error measure, compiling a
//! plan, and running a session over every golden file of a model.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use switchhead_compiler::import::{LoadOptions, load_model};
use switchhead_compiler::ir::{lower, materialize};
use switchhead_compiler::onnx::WeightDType;
use switchhead_compiler::passes::{PassManager, RunOptions, default_pipeline};
use switchhead_compiler::plan::{PlanOptions, plan_graph, write_plan_file};
use switchhead_compiler::tensor_io::{chunk_names, parse, read_bytes, read_f32, read_tokens};
use switchhead_ops::plan::{PlanGraph, PlanLayout, PlanWeight, layout_weights};
use switchhead_runtime::{Session, TokenBatch, XlMemory};

/// The logits tolerance for fp32 (max relative error).
pub const TOL: f32 = 1e-4;

/// `testdata/models/{name}`.
pub fn model_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/models")
        .join(name)
}

/// max |ours - golden| / max |golden|.
pub fn max_rel_err(ours: &[f32], golden: &[f32]) -> f32 {
    assert_eq!(ours.len(), golden.len(), "logits length");
    let scale = golden.iter().fold(0f32, |m, v| m.max(v.abs()));
    ours.iter()
        .zip(golden)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale
}

/// A `.shplan` of testdata model `name` in the temp folder (`tag` keeps files apart), with
/// projection weights in the `panels` layout as the CLI writes them; `chunk_size` overrides
/// the recorded chunk length.
pub fn compile_plan(
    name: &str,
    dtype: WeightDType,
    chunk_size: Option<usize>,
    tag: &str,
) -> PathBuf {
    compile_plan_with(name, dtype, chunk_size, tag, true)
}

/// [`compile_plan`] choosing the layout: `panels` false keeps every weight row-major (`-O0`).
pub fn compile_plan_with(
    name: &str,
    dtype: WeightDType,
    chunk_size: Option<usize>,
    tag: &str,
    panels: bool,
) -> PathBuf {
    compile_plan_unpacking(name, dtype, chunk_size, tag, panels, None)
}

/// [`compile_plan_with`], then the packed weights `unpack` names set back to row-major (as a
/// compiler that packed fewer slots wrote them; such a compiler did not merge projections
/// either, so with `unpack` the pipeline leaves out `merge-projections`).
pub fn compile_plan_unpacking(
    name: &str,
    dtype: WeightDType,
    chunk_size: Option<usize>,
    tag: &str,
    panels: bool,
    unpack: Option<fn(&PlanWeight) -> bool>,
) -> PathBuf {
    let model = load_model(&model_dir(name), &LoadOptions::default()).expect("load");
    let mut graph = lower(&model);
    let passes = default_pipeline()
        .into_iter()
        .filter(|p| unpack.is_none() || p.name() != "merge-projections")
        .collect();
    PassManager::new(passes)
        .run(&mut graph, RunOptions::default())
        .expect("passes");
    let opts = PlanOptions {
        dtype,
        chunk_size: chunk_size.or(model.config.chunk_size),
        panels,
        quantize: None,
    };
    let weights = materialize(&graph, &model.weights).expect("derived weights");
    let mut plan = plan_graph(&graph, &weights, &opts).expect("plan");
    let unpacked = unpack.map_or(0, |rule| unpack_weights(&mut plan, rule));
    assert!(
        unpack.is_none() || unpacked > 0,
        "the unpack rule matched no packed weight of {name}"
    );
    let out = std::env::temp_dir().join(format!(
        "{tag}-{name}-{dtype:?}-{panels}-{unpacked}-{}.shplan",
        std::process::id()
    ));
    write_plan_file(&plan, &weights, &out).expect("write");
    out
}

/// Sets the weights `rule` names back to row-major; returns how many.
fn unpack_weights(plan: &mut PlanGraph, rule: fn(&PlanWeight) -> bool) -> usize {
    let mut n = 0;
    for w in plan.weights.iter_mut().filter(|w| rule(w)) {
        w.layout = PlanLayout::RowMajor;
        w.nbytes = (w.stored_len() * w.dtype.size()) as u64;
        n += 1;
    }
    layout_weights(&mut plan.weights);
    n
}

/// Every golden chunk of `name` through `session`: (label, logits, golden logits).
pub fn run_goldens(name: &str, session: &Session) -> Vec<(String, Vec<f32>, Vec<f32>)> {
    run_goldens_repeated(name, session, 1)
}

/// [`run_goldens`], each chunk run `times` times in a row on the same input (one result per
/// run; XL memory moves on from the last).
pub fn run_goldens_repeated(
    name: &str,
    session: &Session,
    times: usize,
) -> Vec<(String, Vec<f32>, Vec<f32>)> {
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
            let want = read_f32(&file, &st, &chunk.replace("tokens", "logits")).expect("logits");
            let mut next_memory = None;
            for _ in 0..times {
                let logits = match session.is_xl() {
                    true => {
                        let (logits, next) = session
                            .forward_chunk(&tokens, memory.as_ref())
                            .expect("chunk");
                        next_memory = Some(next);
                        logits
                    }
                    false => session.logits(&tokens).expect("logits"),
                };
                out.push((
                    format!("{golden} {chunk}"),
                    logits.data,
                    want.data().to_vec(),
                ));
            }
            memory = next_memory;
        }
    }
    out
}

/// Every golden chunk of `name` run twice in a row through `session` gives the same logits
/// both times, within [`TOL`] of the golden ones (state the session keeps between runs, as
/// XL position keys, changes nothing).
pub fn check_repeated_runs(name: &str, session: &Session) {
    let runs = run_goldens_repeated(name, session, 2);
    assert!(runs.len() >= 8, "{name}: golden chunks");
    for pair in runs.chunks_exact(2) {
        let ((label, a, golden), (_, b, _)) = (&pair[0], &pair[1]);
        let diff = max_rel_err(b, a);
        assert!(
            a == b,
            "{name} {label}: the second run differs (max rel {diff:e})"
        );
        let err = max_rel_err(b, golden);
        assert!(err <= TOL, "{name} {label}: max rel err {err}");
    }
}

/// The worst max relative error of `session` over the golden files of `name`.
pub fn worst_error(name: &str, session: &Session) -> f32 {
    let mut worst = 0f32;
    for (label, ours, golden) in run_goldens(name, session) {
        let err = max_rel_err(&ours, &golden);
        println!("{name} {label}: max rel err {err:.3e}");
        worst = worst.max(err);
    }
    worst
}
