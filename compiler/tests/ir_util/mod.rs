//! Shared helpers of the IR and pass tests: testdata models, golden files, random weights.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use switchhead_compiler::Model;
use switchhead_compiler::import::{LoadOptions, load_model};
use switchhead_compiler::ir::interp::{self, InterpValue};
use switchhead_compiler::ir::{Dim, Graph, ValueDef};
use switchhead_compiler::model::Weights;
use switchhead_compiler::tensor_io::{parse, read_bytes, read_f32, read_tokens};
use switchhead_ops::Tensor;

/// The testdata models with golden files.
pub const MODELS: [&str; 5] = ["rope", "xl", "switchall", "dense", "gated"];

pub fn testdata(model: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/models")
        .join(model)
}

pub fn load(model: &str) -> Result<Model> {
    load_model(&testdata(model), &LoadOptions::default()).with_context(|| model.to_string())
}

/// Max |ours - golden| / max |golden|.
pub fn max_rel_err(ours: &[f32], golden: &[f32]) -> f32 {
    let scale = golden.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = ours
        .iter()
        .zip(golden)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}

/// One golden chunk: its token input and expected logits.
pub struct Chunk {
    pub tokens: InterpValue,
    pub batch: usize,
    pub logits: Tensor,
}

/// The chunks of `testdata/models/{model}/{file}.safetensors` (`tokens` or `tokens0..`).
pub fn golden_chunks(model: &str, file: &str) -> Result<Vec<Chunk>> {
    let path = testdata(model).join(format!("{file}.safetensors"));
    let bytes = read_bytes(&path)?;
    let st = parse(&path, &bytes)?;
    let names = switchhead_compiler::tensor_io::chunk_names(&st, "tokens");
    let mut chunks = Vec::new();
    for name in names {
        let t = read_tokens(&path, &st, &name)?;
        let ids: Vec<i64> = (0..t.batch())
            .flat_map(|b| t.sequence(b).to_vec())
            .collect();
        let tokens = InterpValue::Tokens {
            shape: vec![t.batch(), t.seq()],
            ids,
        };
        let logits = read_f32(&path, &st, &name.replace("tokens", "logits"))?;
        chunks.push(Chunk {
            tokens,
            batch: t.batch(),
            logits,
        });
    }
    Ok(chunks)
}

/// Graph inputs for `tokens` plus, for XL graphs, `memory.{i}` (empty when `memory` is None).
pub fn inputs(
    g: &Graph,
    tokens: &InterpValue,
    batch: usize,
    memory: Option<&[Tensor]>,
) -> Vec<(String, InterpValue)> {
    let mut out = vec![("tokens".to_string(), tokens.clone())];
    for &v in &g.inputs {
        let ValueDef::Input(name) = &g.value(v).def else {
            continue;
        };
        let Some(i) = name
            .strip_prefix("memory.")
            .and_then(|i| i.parse::<usize>().ok())
        else {
            continue;
        };
        let d = match g.value(v).fact.as_ref().and_then(|f| f.shape.last()) {
            Some(Dim::Known(d)) => *d,
            _ => 0,
        };
        let t = memory.map_or_else(|| Tensor::zeros(vec![batch, 0, d]), |m| m[i].clone());
        out.push((name.clone(), InterpValue::F32(t)));
    }
    out
}

/// Runs `g` over every chunk of a golden file (carrying XL memory); returns the logits.
pub fn run_chunks(g: &Graph, w: &Weights, chunks: &[Chunk]) -> Result<Vec<Tensor>> {
    let mut memory: Option<Vec<Tensor>> = None;
    let mut all = Vec::new();
    for c in chunks {
        let out = interp::run(g, w, &inputs(g, &c.tokens, c.batch, memory.as_deref()))?;
        let mems: Vec<Tensor> = out
            .iter()
            .filter(|(n, _)| n.starts_with("memory_out."))
            .map(|(_, t)| t.clone())
            .collect();
        memory = (!mems.is_empty()).then_some(mems);
        let logits = out
            .into_iter()
            .find(|(n, _)| n == "logits")
            .context("no logits output")?;
        all.push(logits.1);
    }
    Ok(all)
}

/// Deterministic pseudo-random weights for every weight value of `g` (shapes from its facts).
pub fn random_weights(g: &Graph, seed: u64) -> Weights {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f64 / (1u64 << 31) as f64 - 0.5) as f32
    };
    let mut tensors = Vec::new();
    for v in &g.values {
        let ValueDef::Weight(name) = &v.def else {
            continue;
        };
        let shape: Vec<usize> = v.fact.as_ref().map_or(Vec::new(), |f| {
            f.shape
                .iter()
                .map(|d| if let Dim::Known(n) = d { *n } else { 1 })
                .collect()
        });
        let data = (0..shape.iter().product::<usize>())
            .map(|_| next())
            .collect();
        tensors.push((name.clone(), Tensor::new(shape, data).expect("shape")));
    }
    Weights::from_tensors(tensors)
}

/// Random f32 `[dims]`.
pub fn random_tensor(shape: Vec<usize>, seed: u64) -> Tensor {
    let mut state = seed;
    let data = (0..shape.iter().product::<usize>())
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f64 / (1u64 << 31) as f64 - 0.5) as f32
        })
        .collect();
    Tensor::new(shape, data).expect("shape")
}

/// Asserts two output lists agree to `tol` max relative error (relative to each tensor's
/// largest magnitude).
#[allow(dead_code)] // not every test binary using this module needs it
pub fn assert_close_outputs(a: &[(String, Tensor)], b: &[(String, Tensor)], tol: f32) {
    assert_eq!(a.len(), b.len(), "output count");
    for ((na, ta), (nb, tb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        assert_eq!(ta.shape(), tb.shape(), "{na}: shape");
        let scale = tb
            .data()
            .iter()
            .fold(0f32, |m, x| m.max(x.abs()))
            .max(1e-30);
        let err = ta
            .data()
            .iter()
            .zip(tb.data())
            .fold(0f32, |m, (x, y)| m.max((x - y).abs() / scale));
        assert!(err <= tol, "{na}: max relative error {err:e} > {tol:e}");
    }
}

/// Asserts two output lists are bit-identical.
pub fn assert_same_outputs(a: &[(String, Tensor)], b: &[(String, Tensor)]) {
    assert_eq!(a.len(), b.len(), "output count");
    for ((na, ta), (nb, tb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        assert_eq!(ta.shape(), tb.shape(), "{na}: shape");
        assert!(
            ta.data()
                .iter()
                .zip(tb.data())
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "{na}: values differ"
        );
    }
}

/// The text form, derived-weight recipes included, parses back to the same graph.
pub fn assert_text_round_trip(g: &Graph) {
    let back = switchhead_compiler::ir::parse(&switchhead_compiler::ir::print(g)).unwrap();
    assert_eq!(
        switchhead_compiler::ir::print(&back),
        switchhead_compiler::ir::print(g)
    );
    assert_eq!(back.derived, g.derived);
}
