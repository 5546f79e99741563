//! The reference executor against every golden file: ours in `testdata/models` (PyTorch
//! reference, with routing decisions) and the official code's in `../shared/official-golden`.
//!
//! Tolerances: logits max relative error (max |ours - golden| / max |golden|) <= 1e-4; the
//! selected expert sets of every router identical, and their gates within 1e-4.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use safetensors::SafeTensors;
use switchhead_compiler::import::{LoadOptions, load_model};
use switchhead_compiler::reference::{Forward, Memory, ReferenceExecutor};
use switchhead_compiler::tensor_io::{
    chunk_names, parse, read_bytes, read_f32, read_i64, read_tokens,
};
use switchhead_ops::router::Routing;

const LOGITS_TOL: f32 = 1e-4;
const GATE_TOL: f32 = 1e-4;

fn testdata(model: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/models")
        .join(model)
}

fn official(model: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/official-golden")
        .join(model)
}

/// Max relative error as defined at the top of this file.
fn max_rel_err(ours: &[f32], golden: &[f32]) -> f32 {
    let scale = golden.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = ours
        .iter()
        .zip(golden)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}

/// Runs every chunk of `golden` through the model at `model_path`; checks logits and routing.
fn check_golden(model_path: &Path, golden: &Path) -> Result<()> {
    let model = load_model(model_path, &LoadOptions::default())
        .with_context(|| format!("{}", model_path.display()))?;
    let exec = ReferenceExecutor::new(&model)?;
    let bytes = read_bytes(golden)?;
    let st = parse(golden, &bytes)?;
    let names = chunk_names(&st, "tokens");
    ensure!(!names.is_empty(), "{}: no tokens", golden.display());
    let mut memory: Option<Memory> = None;
    for (c, name) in names.iter().enumerate() {
        let tokens = read_tokens(golden, &st, name)?;
        let out = exec.forward(&tokens, memory.as_ref())?;
        let want = read_f32(golden, &st, &name.replace("tokens", "logits"))?;
        ensure!(
            out.logits.shape() == want.shape(),
            "logits shape {:?} vs {:?}",
            out.logits.shape(),
            want.shape()
        );
        let err = max_rel_err(out.logits.data(), want.data());
        println!(
            "{} chunk {c}: logits max rel err {err:.3e}",
            golden.display()
        );
        ensure!(
            err <= LOGITS_TOL,
            "{} chunk {c}: logits max rel err {err:.3e} > {LOGITS_TOL}",
            golden.display()
        );
        check_routing(golden, &st, c, &out)?;
        memory = Some(out.memory);
    }
    Ok(())
}

fn check_routing(path: &Path, st: &SafeTensors<'_>, chunk: usize, out: &Forward) -> Result<()> {
    let layers = out.routing.first().map_or(0, Vec::len);
    for layer in 0..layers {
        for site in ["v", "o", "ffn"] {
            let key = format!("sel.{chunk}.{layer}.{site}");
            if st.tensor(&format!("{key}.idx")).is_err() {
                continue;
            }
            for (b, per_layer) in out.routing.iter().enumerate() {
                let r = &per_layer[layer];
                let ours = match site {
                    "v" => r.v.as_ref(),
                    "o" => r.o.as_ref(),
                    _ => r.ffn.as_ref(),
                };
                let Some(ours) = ours else {
                    bail!("{key}: golden has routing, the executor has none")
                };
                compare_routing(path, st, &key, b, ours)?;
            }
        }
    }
    Ok(())
}

fn compare_routing(
    path: &Path,
    st: &SafeTensors<'_>,
    key: &str,
    b: usize,
    ours: &Routing,
) -> Result<()> {
    let (shape, idx) = read_i64(path, st, &format!("{key}.idx"))?;
    let gate = read_f32(path, st, &format!("{key}.gate"))?;
    let per_batch = shape[1..].iter().product::<usize>();
    ensure!(
        per_batch == ours.idx.len(),
        "{key}: golden {shape:?} vs ours {} entries",
        ours.idx.len()
    );
    let k = ours.k;
    for (slot, chunk) in ours.idx.chunks(k).enumerate() {
        let start = b * per_batch + slot * k;
        let mut want: Vec<(i64, f32)> = (start..start + k)
            .map(|i| (idx[i], gate.data()[i]))
            .collect();
        let mut got: Vec<(i64, f32)> = chunk
            .iter()
            .zip(&ours.gate[slot * k..])
            .map(|(&i, &g)| (i as i64, g))
            .collect();
        want.sort_by_key(|p| p.0);
        got.sort_by_key(|p| p.0);
        let ids = |v: &[(i64, f32)]| v.iter().map(|p| p.0).collect::<Vec<_>>();
        ensure!(
            ids(&want) == ids(&got),
            "{key} batch {b} slot {slot}: experts {:?} vs golden {:?}",
            ids(&got),
            ids(&want)
        );
        for (w, g) in want.iter().zip(&got) {
            ensure!(
                (w.1 - g.1).abs() <= GATE_TOL,
                "{key} batch {b} slot {slot}: gate {} vs golden {}",
                g.1,
                w.1
            );
        }
    }
    Ok(())
}

fn golden_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("golden"))
        })
        .collect();
    files.sort();
    ensure!(!files.is_empty(), "{}: no golden files", dir.display());
    Ok(files)
}

/// Checks `model_path` against every golden file in `golden_dir`.
fn check_dir(model_path: &Path, golden_dir: &Path) -> Result<()> {
    for golden in golden_files(golden_dir)? {
        check_golden(model_path, &golden)?;
    }
    Ok(())
}

#[test]
fn official_rope() -> Result<()> {
    check_dir(&official("official-rope"), &official("official-rope"))
}

#[test]
fn official_xl() -> Result<()> {
    check_dir(&official("official-xl"), &official("official-xl"))
}

#[test]
fn official_trn_switchall_xl_mem() -> Result<()> {
    check_dir(
        &official("official-trn-switchall-xl-mem"),
        &official("official-trn-switchall-xl-mem"),
    )
}

#[test]
fn testdata_rope() -> Result<()> {
    check_dir(&testdata("rope"), &testdata("rope"))
}

#[test]
fn testdata_xl() -> Result<()> {
    check_dir(&testdata("xl"), &testdata("xl"))
}

#[test]
fn testdata_switchall() -> Result<()> {
    check_dir(&testdata("switchall"), &testdata("switchall"))
}

#[test]
fn testdata_dense() -> Result<()> {
    check_dir(&testdata("dense"), &testdata("dense"))
}

#[test]
fn testdata_gated() -> Result<()> {
    check_dir(&testdata("gated"), &testdata("gated"))
}

/// The training-code `.pth` of the rope model gives the rope model's golden numbers.
#[test]
fn testdata_rope_pth() -> Result<()> {
    check_dir(&testdata("rope-pth/model.pth"), &testdata("rope"))
}

/// Standalone key names under a custom prefix, config in the safetensors metadata.
#[test]
fn testdata_xl_standalone() -> Result<()> {
    check_dir(
        &testdata("xl-standalone/model.safetensors"),
        &testdata("xl"),
    )
}
