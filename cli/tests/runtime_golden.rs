//! The runtime's CPU backend (tract plus our ai.switchhead ops) on the files the compiler
//! writes, for every testdata model in every form (custom-domain, `--decompose` with dense
//! experts, `--decompose --experts gather`): logits match every golden file to a max relative
//! error of 1e-4, XL memory over two chunks included. The decompose forms run on plain tract.

use std::path::{Path, PathBuf};

use switchhead_compiler::import::{LoadOptions, load_model};
use switchhead_compiler::ir::lower;
use switchhead_compiler::onnx::{EmitOptions, ExpertForm, emit, write};
use switchhead_compiler::tensor_io::{chunk_names, parse, read_bytes, read_f32, read_tokens};
use switchhead_runtime::{Session, SessionOptions, TokenBatch, XlMemory};

const TOL: f32 = 1e-4;

fn model_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/models")
        .join(name)
}

/// The emitted forms: custom-domain, and the decomposition with either expert form.
#[derive(Debug, Clone, Copy)]
enum Form {
    Custom,
    Decompose(ExpertForm),
}

fn compile(name: &str, form: Form) -> PathBuf {
    let model = load_model(&model_dir(name), &LoadOptions::default()).expect("load");
    let opts = match form {
        Form::Custom => EmitOptions::default(),
        Form::Decompose(experts) => EmitOptions {
            decompose: true,
            experts,
            ..Default::default()
        },
    };
    let proto = emit(&lower(&model), &model.weights, &opts).expect("emit");
    let tag = match form {
        Form::Custom => "custom",
        Form::Decompose(ExpertForm::Dense) => "decompose",
        Form::Decompose(ExpertForm::Gather) => "gather",
    };
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

fn check_all(name: &str) {
    check(name, Form::Custom);
    check(name, Form::Decompose(ExpertForm::Dense));
    check(name, Form::Decompose(ExpertForm::Gather));
}

fn check(name: &str, form: Form) {
    let path = compile(name, form);
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
            println!("{name} {form:?} {golden} {chunk}: max rel err {err:.3e}");
            assert!(err <= TOL, "{name} {form:?} {golden} {chunk}: {err}");
        }
    }
    let _ = std::fs::remove_file(path);
}

#[test]
fn rope() {
    check_all("rope");
}

#[test]
fn xl_with_memory() {
    check_all("xl");
}

#[test]
fn switchall_with_memory() {
    check_all("switchall");
}

#[test]
fn dense() {
    check_all("dense");
}

#[test]
fn gated() {
    check_all("gated");
}
