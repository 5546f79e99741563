//! The IR interpreter on lowered testdata models reproduces the golden logits
//! (max relative error <= 1e-4), including XL memory carried across chunks.

mod ir_util;

use anyhow::{Result, ensure};
use ir_util::{MODELS, golden_chunks, load, max_rel_err, run_chunks, testdata};
use switchhead_compiler::ir::lower;

const TOL: f32 = 1e-4;

fn check(model: &str) -> Result<()> {
    let m = load(model)?;
    let g = lower(&m);
    for file in ["golden_short", "golden_long", "golden_mem"] {
        if !testdata(model).join(format!("{file}.safetensors")).exists() {
            continue;
        }
        let chunks = golden_chunks(model, file)?;
        let got = run_chunks(&g, &m.weights, &chunks)?;
        for (c, (ours, chunk)) in got.iter().zip(&chunks).enumerate() {
            ensure!(
                ours.shape() == chunk.logits.shape(),
                "{model}/{file} chunk {c}: shape {:?} vs {:?}",
                ours.shape(),
                chunk.logits.shape()
            );
            let err = max_rel_err(ours.data(), chunk.logits.data());
            println!("{model}/{file} chunk {c}: max rel err {err:.3e}");
            ensure!(
                err <= TOL,
                "{model}/{file} chunk {c}: max rel err {err:.3e} > {TOL}"
            );
        }
    }
    Ok(())
}

#[test]
fn interp_rope() -> Result<()> {
    check("rope")
}

#[test]
fn interp_xl() -> Result<()> {
    check("xl")
}

#[test]
fn interp_switchall() -> Result<()> {
    check("switchall")
}

#[test]
fn interp_dense() -> Result<()> {
    check("dense")
}

#[test]
fn interp_gated() -> Result<()> {
    check("gated")
}

#[test]
fn all_models_listed() {
    assert_eq!(MODELS.len(), 5);
}

#[test]
fn missing_input_is_an_error() -> Result<()> {
    let m = load("gated")?;
    let g = lower(&m);
    let err = switchhead_compiler::ir::interp::run(&g, &m.weights, &[]).unwrap_err();
    ensure!(err.to_string().contains("tokens"), "{err}");
    Ok(())
}
