//! The runtime's CPU backend (tract plus our ai.switchhead ops) on the files the compiler
//! writes, for every testdata model in both forms (custom-domain and `--decompose`): logits
//! match every golden file to a max relative error of 1e-4, XL memory over two chunks included.

use std::path::{Path, PathBuf};

use switchhead_compiler::import::{LoadOptions, load_model};
use switchhead_compiler::ir::lower;
use switchhead_compiler::onnx::{EmitOptions, emit, write};
use switchhead_compiler::tensor_io::{chunk_names, parse, read_bytes, read_f32, read_tokens};
use switchhead_runtime::{Session, SessionOptions, TokenBatch, XlMemory};

const TOL: f32 = 1e-4;

fn model_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/models")
        .join(name)
}

fn compile(name: &str, decompose: bool) -> PathBuf {
    let model = load_model(&model_dir(name), &LoadOptions::default()).expect("load");
    let opts = EmitOptions {
        decompose,
        ..Default::default()
    };
    let proto = emit(&lower(&model), &model.weights, &opts).expect("emit");
    let tag = if decompose { "decompose" } else { "custom" };
    let out = std::env::temp_dir().join(format!(
        "rt-golden-{name}-{tag}-{}.onnx",
        std::process::id()
    ));
    write(proto, &out).expect("write");
    out
}

fn max_rel_err(ours: &[f32], golden: &[f32]) -> f32 {
    let scale = golden.iter().fold(0f32, |m, v| m.max(v.abs()));
    ours.iter()
        .zip(golden)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale
}

fn check(name: &str, decompose: bool) {
    let path = compile(name, decompose);
    let session = Session::load(&path, SessionOptions::default()).expect("session");
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
            let err = max_rel_err(&logits.data, want.data());
            println!("{name} decompose={decompose} {golden} {chunk}: max rel err {err:.3e}");
            assert!(
                err <= TOL,
                "{name} decompose={decompose} {golden} {chunk}: {err}"
            );
        }
    }
    let _ = std::fs::remove_file(path);
}

#[test]
fn rope() {
    check("rope", false);
    check("rope", true);
}

#[test]
fn xl_with_memory() {
    check("xl", false);
    check("xl", true);
}

#[test]
fn switchall_with_memory() {
    check("switchall", false);
    check("switchall", true);
}

#[test]
fn dense() {
    check("dense", false);
    check("dense", true);
}

#[test]
fn gated() {
    check("gated", false);
    check("gated", true);
}
