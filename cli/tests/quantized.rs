//! Quantized plans (`switchhead-compile --quantize`): held-out bits per byte of int8 and
//! int4 (group 32) plans stay within 1% / 3% of the f32 plan's, and the expert selections
//! move little under the same quantization.
//!
//! The selection measure runs the compiler's reference executor twice on the checkpoint:
//! as is, and with every tensor the plan would quantize (the [`quantizable`] slots of the
//! lowered graph) quantized and dequantized by the plan's own `quantize` / `dequantize`.
//! (The plan quantizes the optimized graph's weights; merging stacks rows, which groups
//! along the reduction axis do not see, so this is the same quantization of those rows.)
//! `cargo test -p switchhead-cli --test quantized -- --ignored --nocapture` prints both
//! measures for every testdata model.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use switchhead_compiler::Model;
use switchhead_compiler::import::{LoadOptions, load_model};
use switchhead_compiler::ir::lower;
use switchhead_compiler::model::Weights;
use switchhead_compiler::plan::quantizable;
use switchhead_compiler::reference::{Forward, ReferenceExecutor, Tokens};
use switchhead_ops::Tensor;
use switchhead_ops::plan::{QuantBits, QuantShape, dequantize, quantize};
use switchhead_ops::router::Routing;

const MODELS: [&str; 7] = [
    "rope",
    "xl",
    "switchall",
    "dense",
    "gated",
    "spm",
    "rope-pth",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model_dir(name: &str) -> PathBuf {
    root().join("testdata/models").join(name)
}

fn run(exe: &str, args: &[&str]) -> String {
    let o = Command::new(exe).args(args).output().expect("run binary");
    assert!(
        o.status.success(),
        "{exe} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The first `bytes` of the held-out text, in a file under `dir`.
fn heldout_slice(dir: &Path, bytes: usize) -> PathBuf {
    let text = std::fs::read(root().join("testdata/corpus/heldout-eval.txt")).expect("heldout");
    let path = dir.join(format!("heldout-{bytes}.txt"));
    std::fs::write(&path, &text[..bytes.min(text.len())]).expect("write slice");
    path
}

/// Bits per byte of `model` compiled to a plan with `quant` (extra compile args) on `text`.
fn plan_bpb(model: &str, quant: &[&str], tag: &str, dir: &Path, text: &Path) -> f64 {
    let plan = dir.join(format!("{model}-{tag}.shplan"));
    let (src, out) = (model_dir(model), plan.to_string_lossy().into_owned());
    let mut args = vec![src.to_str().expect("utf-8 path"), "-o", &out];
    args.extend_from_slice(quant);
    run(env!("CARGO_BIN_EXE_switchhead-compile"), &args);
    let text = text.to_string_lossy();
    let mut eval = vec!["eval", &out, "--text", &text];
    // a model with its own vocabulary reads the text through its tokenizer
    let tokenizer = src.join("tokenizer.model");
    let tokenizer = tokenizer.to_string_lossy();
    if src.join("tokenizer.model").exists() {
        eval.extend(["--tokenizer", &tokenizer]);
    }
    let stdout = run(env!("CARGO_BIN_EXE_switchhead"), &eval);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("bits_per_byte: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no bits_per_byte line in {stdout}"))
}

/// f32, int8 and int4-g32 bits per byte of `model` on the first `bytes` of the held-out text.
fn bpbs(model: &str, bytes: usize) -> [f64; 3] {
    // one directory per call: tests run side by side and each removes its own
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("switchhead-quantized-{pid}-{model}-{bytes}"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let text = heldout_slice(&dir, bytes);
    let args: [&[&str]; 3] = [
        &[],
        &["--quantize", "int8"],
        &["--quantize", "int4", "--group-size", "32"],
    ];
    let tags = ["f32", "int8", "int4"];
    let out = [0, 1, 2].map(|i| plan_bpb(model, args[i], tags[i], &dir, &text));
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn rel(q: f64, f: f64) -> f64 {
    (q - f) / f
}

#[test]
fn int8_and_int4_plans_keep_bits_per_byte() {
    let [f, i8, i4] = bpbs("switchall", 4096);
    assert!(f > 0.5 && f < 8.0, "f32 bpb {f}");
    assert!(rel(i8, f).abs() < 0.01, "int8 {i8} vs f32 {f}");
    assert!(rel(i4, f).abs() < 0.03, "int4 {i4} vs f32 {f}");
    // the quantization is really there: the plans differ from f32 and from each other
    assert!(i8 != f && i4 != i8, "f32 {f}, int8 {i8}, int4 {i4}");
}

/// `model` with every quantizable tensor replaced by its quantized-dequantized value.
fn quantized_model(model: &Model, bits: QuantBits, group: usize) -> Model {
    let graph = lower(model);
    let mut names = HashSet::new();
    for (_, node) in graph.live_nodes() {
        for (slot, &v) in node.inputs.iter().enumerate() {
            if let (true, Some(name)) = (quantizable(&node.op, slot), graph.weight_name(v)) {
                names.insert(name.to_string());
            }
        }
    }
    let tensors = model.weights.names().map(|name| {
        let t = model.weights.tensor(name).expect("tensor");
        let t = match names.contains(name) {
            true => round_trip(&t, bits, group),
            false => t,
        };
        (name.to_string(), t)
    });
    Model {
        config: model.config.clone(),
        weights: Weights::from_tensors(tensors.collect::<Vec<_>>()),
        source: model.source.clone(),
        layout: model.layout.clone(),
    }
}

/// `t` quantized and dequantized as the plan stores it (`[E, in, out]` as transposes).
fn round_trip(t: &Tensor, bits: QuantBits, group: usize) -> Tensor {
    let shape = t.shape().to_vec();
    let inp = QuantShape::of(&shape, 1).expect("rank 2 or 3").inp;
    let group = if bits == QuantBits::Int8 { inp } else { group };
    let s = QuantShape::of(&shape, group).expect("rank 2 or 3");
    let rows = match shape.len() {
        3 => transpose(t.data(), s.count, s.inp, s.out),
        _ => t.data().to_vec(),
    };
    let back = dequantize(bits, &quantize(bits, &rows, s), s).expect("dequantize");
    let data = match shape.len() {
        3 => transpose(&back, s.count, s.out, s.inp),
        _ => back,
    };
    Tensor::new(shape, data).expect("tensor")
}

/// Each of `count` row-major `[a, b]` matrices transposed.
fn transpose(d: &[f32], count: usize, a: usize, b: usize) -> Vec<f32> {
    let mut t = vec![0f32; d.len()];
    for m in 0..count {
        for i in 0..a {
            for j in 0..b {
                t[m * a * b + j * a + i] = d[m * a * b + i * b + j];
            }
        }
    }
    t
}

/// One window of held-out tokens for `name` (its tokenizer, its chunk length).
fn tokens(name: &str, model: &Model) -> Tokens {
    let text = std::fs::read(root().join("testdata/corpus/heldout-eval.txt")).expect("heldout");
    let tok =
        switchhead_runtime::Tokenizer::for_model(&model_dir(name), None, model.config.vocab_size)
            .expect("tokenizer");
    let ids = tok
        .encode(&String::from_utf8_lossy(&text[..4096]))
        .expect("encode");
    let seq = model.config.chunk_size.unwrap_or(128).min(ids.len());
    Tokens::new(1, seq, ids[..seq].to_vec()).expect("tokens")
}

/// (selected experts of `base` not selected by `other`, all selected), over every router.
fn routing_changes(base: &Forward, other: &Forward) -> (usize, usize) {
    let mut changed = (0, 0);
    for (lb, lo) in base
        .routing
        .iter()
        .flatten()
        .zip(other.routing.iter().flatten())
    {
        for (a, b) in [(&lb.v, &lo.v), (&lb.o, &lo.o), (&lb.ffn, &lo.ffn)] {
            if let (Some(a), Some(b)) = (a, b) {
                let (c, n) = differing(a, b);
                changed = (changed.0 + c, changed.1 + n);
            }
        }
    }
    changed
}

fn differing(a: &Routing, b: &Routing) -> (usize, usize) {
    let per = a.k.max(1);
    let mut changed = 0;
    for (x, y) in a.idx.chunks(per).zip(b.idx.chunks(per)) {
        changed += x.iter().filter(|e| !y.contains(e)).count();
    }
    (changed, a.idx.len())
}

/// The share of selected experts that differ from f32's, int8 and int4-g32 (None: the model
/// routes nothing, as the dense and the gated (E = 1) attention with a dense FFN).
fn routing_shares(name: &str) -> [Option<f64>; 2] {
    let model = load_model(&model_dir(name), &LoadOptions::default()).expect("load");
    let tokens = tokens(name, &model);
    let base = ReferenceExecutor::new(&model).expect("executor");
    let base = base.forward(&tokens, None).expect("forward");
    [(QuantBits::Int8, 0), (QuantBits::Int4, 32)].map(|(bits, group)| {
        let q = quantized_model(&model, bits, group);
        let q = ReferenceExecutor::new(&q).expect("executor");
        let (changed, total) = routing_changes(&base, &q.forward(&tokens, None).expect("forward"));
        (total > 0).then(|| changed as f64 / total as f64)
    })
}

#[test]
fn quantization_moves_few_expert_selections() {
    let [Some(i8), Some(i4)] = routing_shares("rope") else {
        panic!("rope: no routing decisions");
    };
    assert!(
        i8 < 0.05,
        "int8 changed {:.2}% of the selections",
        100.0 * i8
    );
    assert!(
        i4 < 0.20,
        "int4 changed {:.2}% of the selections",
        100.0 * i4
    );
    assert!(
        i4 > 0.0,
        "int4 changed no selection: is the quantization applied?"
    );
}

/// The table for BENCHMARKS.md: bpb on the whole held-out text and the selection shares.
#[test]
#[ignore = "measurement for every model (minutes): -- --ignored --nocapture"]
fn measure_every_model() {
    println!(
        "| model | f32 bpb | int8 bpb | int8 change | int4-g32 bpb | int4 change | int8 experts changed | int4 experts changed |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for name in MODELS {
        let [f, i8, i4] = bpbs(name, usize::MAX);
        let share =
            |r: Option<f64>| r.map_or("no routing".into(), |r| format!("{:.2}%", 100.0 * r));
        let [r8, r4] = routing_shares(name).map(share);
        println!(
            "| {name} | {f:.4} | {i8:.4} | {:+.2}% | {i4:.4} | {:+.2}% | {r8} | {r4} |",
            100.0 * rel(i8, f),
            100.0 * rel(i4, f),
        );
    }
}
