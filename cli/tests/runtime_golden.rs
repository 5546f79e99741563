//! The runtime's CPU backend (tract plus our ai.switchhead ops) on the files the compiler
//! writes, for every testdata model in every form (custom-domain, `--decompose` with dense
//! experts, `--decompose --experts gather`): logits match every golden file to a max relative
//! error of 1e-4, XL memory over two chunks included. The decompose forms run on plain tract.

mod common;

use std::path::PathBuf;

use common::{TOL, check_repeated_runs, model_dir, worst_error};

use switchhead_compiler::import::{LoadOptions, load_model};
use switchhead_compiler::ir::lower;
use switchhead_compiler::onnx::{EmitOptions, ExpertForm, emit, write};
use switchhead_runtime::{Session, SessionOptions};

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

fn check_all(name: &str) {
    check(name, Form::Custom);
    check(name, Form::Decompose(ExpertForm::Dense));
    check(name, Form::Decompose(ExpertForm::Gather));
}

fn check(name: &str, form: Form) {
    let path = compile(name, form);
    let session = Session::load(&path, SessionOptions::default()).expect("session");
    let err = worst_error(name, &session);
    assert!(err <= TOL, "{name} {form:?}: max rel err {err}");
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

/// The custom-domain op keeps each XL layer's position keys between runs: every golden chunk
/// run twice in a row gives the same logits both times.
#[test]
fn xl_position_keys_kept_between_runs() {
    for name in ["xl", "switchall"] {
        let path = compile(name, Form::Custom);
        let session = Session::load(&path, SessionOptions::default()).expect("session");
        check_repeated_runs(name, &session);
        let _ = std::fs::remove_file(path);
    }
}
