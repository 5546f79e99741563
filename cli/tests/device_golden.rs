//! The device executor on OpenCL (PoCL on these CPU-only machines, any OpenCL GPU elsewhere):
//! every testdata model and every `../shared/official-golden` model through
//! `switchhead logits --executor opencl` matches the golden logits (f32: max relative error
//! 1e-4; `--dtype bf16`: 1e-2), XL memory over two chunks included; every router's experts
//! equal the golden ones; token-by-token decoding through the device decoder equals the full
//! pass; `run`, `eval` and `bench` take `--executor opencl`; ONNX files from
//! `switchhead-compile` (custom-domain or decomposed, KV cache, f16 storage, external data) run
//! as the plans they embed; and the failures a user can hit (no OpenCL platform, too little
//! device memory, an ONNX file without a plan) are one clear line.
//!
//! Without an OpenCL device the tests print SKIPPED, unless `SWITCHHEAD_REQUIRE_OPENCL` is set
//! (CI sets it: there they must run).
#![cfg(feature = "opencl")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{TOL, compile_plan, max_rel_err, model_dir};
use prost::Message;
use switchhead_compiler::import::{LoadOptions, load_model};
use switchhead_compiler::ir::lower;
use switchhead_compiler::onnx::proto::ModelProto;
use switchhead_compiler::onnx::{EmitOptions, PLAN_GRAPH_KEY, WeightDType, emit, write_with_limit};
use switchhead_compiler::passes::{PassManager, RunOptions};
use switchhead_compiler::tensor_io::{chunk_names, parse, read_bytes, read_f32, read_tokens};
use switchhead_kernels::gpu::{OpenClDevice, OpenClSelect, WType};
use switchhead_runtime::backend::{DeviceBackend, RouteTrace};
use switchhead_runtime::{BackendKind, Session, SessionOptions, TokenBatch, XlMemory};

/// bf16 weights: max relative error on the logits.
const TOL_BF16: f32 = 1e-2;

/// The testdata models (the `.pth` and standalone-layout copies reuse their goldens).
const MODELS: [(&str, &str); 7] = [
    ("rope", "rope"),
    ("xl", "xl"),
    ("switchall", "switchall"),
    ("dense", "dense"),
    ("gated", "gated"),
    ("rope-pth", "rope"),
    ("xl-standalone", "xl"),
];

fn official(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/official-golden")
        .join(name)
}

/// An OpenCL device, or None (after saying why) where there is none and none is required.
fn device(test: &str) -> Option<OpenClDevice> {
    match OpenClDevice::open(OpenClSelect::Any) {
        Ok(d) => Some(d),
        Err(e) if std::env::var_os("SWITCHHEAD_REQUIRE_OPENCL").is_some() => {
            panic!("{test}: SWITCHHEAD_REQUIRE_OPENCL is set, but: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED {test}: {e}");
            None
        }
    }
}

fn switchhead(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_switchhead"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run switchhead")
}

fn tmp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sh-device-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The golden files of a model directory (`golden*.safetensors`).
fn goldens(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("model dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("golden") && name.ends_with(".safetensors")
        })
        .collect();
    files.sort();
    files
}

/// Runs `switchhead logits MODEL --tokens TOKENS -o OUT ARGS..`, which must succeed.
fn logits(model: &Path, tokens: &Path, args: &[&str], out: &Path) {
    let (m, g, o) = (
        model.to_string_lossy(),
        tokens.to_string_lossy(),
        out.to_string_lossy(),
    );
    let mut all = vec!["logits", &m, "--tokens", &g, "-o", &o];
    all.extend_from_slice(args);
    let run = switchhead(&all, &[]);
    assert!(
        run.status.success(),
        "{}: {}",
        model.display(),
        String::from_utf8_lossy(&run.stderr)
    );
}

/// `switchhead logits MODEL --executor opencl --dtype DTYPE` on `golden`: the worst error
/// over its chunks.
fn cli_error(model: &Path, golden: &Path, dtype: &str, out: &Path) -> f32 {
    let args = ["--executor", "opencl", "--dtype", dtype];
    logits_error(model, golden, golden, &args, out)
}

/// `switchhead logits MODEL` with `args` on the tokens of `tokens`: the worst error over the
/// chunks of `reference`'s logits.
fn logits_error(model: &Path, tokens: &Path, reference: &Path, args: &[&str], out: &Path) -> f32 {
    logits(model, tokens, args, out);
    let golden = reference;
    let (gb, ob) = (
        read_bytes(golden).expect("golden"),
        read_bytes(out).expect("out"),
    );
    let (gs, os) = (
        parse(golden, &gb).expect("golden"),
        parse(out, &ob).expect("out"),
    );
    let mut worst = 0f32;
    for chunk in chunk_names(&gs, "logits") {
        let want = read_f32(golden, &gs, &chunk).expect("golden logits");
        let got = read_f32(out, &os, &chunk).expect("our logits");
        assert_eq!(got.shape(), want.shape(), "{chunk}");
        worst = worst.max(max_rel_err(got.data(), want.data()));
    }
    worst
}

fn check_cli(model: &Path, goldens: &[PathBuf], tag: &str) {
    let dir = tmp(tag);
    for golden in goldens {
        for (dtype, tol) in [("f32", TOL), ("bf16", TOL_BF16)] {
            let err = cli_error(model, golden, dtype, &dir.join("out.safetensors"));
            println!(
                "{} {} {dtype}: max rel err {err:.3e}",
                model.display(),
                golden.display()
            );
            assert!(
                err <= tol,
                "{} {}: {dtype} max rel err {err}",
                model.display(),
                golden.display()
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn testdata_models_match_their_goldens_through_the_cli() {
    if device("testdata_models_match_their_goldens_through_the_cli").is_none() {
        return;
    }
    for (name, golden_of) in MODELS {
        check_cli(&model_dir(name), &goldens(&model_dir(golden_of)), name);
    }
}

#[test]
fn official_goldens_match_through_the_cli() {
    if device("official_goldens_match_through_the_cli").is_none() {
        return;
    }
    for name in [
        "official-rope",
        "official-xl",
        "official-trn-switchall-xl-mem",
    ] {
        let dir = official(name);
        check_cli(&dir, &[dir.join("golden.safetensors")], name);
    }
}

/// Testdata model `name` emitted as ONNX with `opts` into `dir` (external data when
/// `external`).
fn compile_onnx(name: &str, opts: EmitOptions, external: bool, dir: &Path) -> PathBuf {
    let model = load_model(&model_dir(name), &LoadOptions::default()).expect("load");
    let mut graph = lower(&model);
    PassManager::default()
        .run(&mut graph, RunOptions::default())
        .expect("passes");
    let proto = emit(&graph, &model.weights, &opts).expect("emit");
    let path = dir.join(format!("{name}.onnx"));
    let limit = if external { 0 } else { u64::MAX };
    write_with_limit(proto, &path, limit).expect("write");
    path
}

/// ONNX files run on the device as the plans they embed, in every form the compiler writes:
/// custom-domain, decomposed with a KV cache, XL, f16 storage with external data.
#[test]
fn onnx_files_run_as_their_plans() {
    if device("onnx_files_run_as_their_plans").is_none() {
        return;
    }
    let decomposed_kv = EmitOptions {
        decompose: true,
        kv_cache: true,
        ..Default::default()
    };
    let f16 = EmitOptions {
        dtype: WeightDType::F16,
        ..Default::default()
    };
    let cases = [
        ("rope", EmitOptions::default(), false),
        ("gated", decomposed_kv, false),
        ("xl", EmitOptions::default(), false),
    ];
    for (name, opts, external) in cases {
        let dir = tmp(&format!("onnx-{name}"));
        let onnx = compile_onnx(name, opts, external, &dir);
        for golden in goldens(&model_dir(name)) {
            let err = cli_error(&onnx, &golden, "f32", &dir.join("out.safetensors"));
            println!("{name} onnx {}: max rel err {err:.3e}", golden.display());
            assert!(err <= TOL, "{name} {}: max rel err {err}", golden.display());
        }
        let _ = std::fs::remove_dir_all(dir);
    }
    // f16 storage moves the logits away from the f32 goldens (routing included), so the
    // device is compared with the CPU runtime on the same file; external data beside it.
    let dir = tmp("onnx-f16");
    let onnx = compile_onnx("switchall", f16, true, &dir);
    assert!(dir.join("switchall.onnx.data").exists(), "external data");
    for golden in goldens(&model_dir("switchall")) {
        let cpu = dir.join("cpu.safetensors");
        logits(&onnx, &golden, &["--executor", "cpu"], &cpu);
        let args = ["--executor", "opencl"];
        let err = logits_error(&onnx, &golden, &cpu, &args, &dir.join("out.safetensors"));
        println!(
            "switchall f16 onnx {}: max rel err to the CPU {err:.3e}",
            golden.display()
        );
        assert!(
            err <= TOL,
            "switchall f16 {}: max rel err {err}",
            golden.display()
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Every chunk of `golden` through `backend` (XL memory carried): logits within `TOL` and
/// every router's experts equal the golden ones.
fn check_traced(backend: &DeviceBackend<OpenClDevice>, golden: &Path) {
    let bytes = read_bytes(golden).expect("golden");
    let st = parse(golden, &bytes).expect("golden");
    let mut memory: Option<XlMemory> = None;
    let info = backend.info().clone();
    for (c, chunk) in chunk_names(&st, "tokens").iter().enumerate() {
        let t = read_tokens(golden, &st, chunk).expect("tokens");
        let ids = (0..t.batch())
            .flat_map(|b| t.sequence(b).to_vec())
            .collect();
        let tokens = TokenBatch::new(t.batch(), t.seq(), ids).expect("batch");
        let mem = info.is_xl().then(|| {
            memory
                .clone()
                .unwrap_or_else(|| XlMemory::empty(t.batch(), info.d_model, info.memory_layers))
        });
        let (out, trace) = backend.run_traced(&tokens, mem.as_ref()).expect("run");
        let want = read_f32(golden, &st, &chunk.replace("tokens", "logits")).expect("logits");
        let err = max_rel_err(&out.logits, want.data());
        assert!(
            err <= TOL,
            "{} {chunk}: max rel err {err}",
            golden.display()
        );
        check_experts(golden, &st, c, &trace);
        memory = info.is_xl().then(|| XlMemory {
            batch: t.batch(),
            mem_len: t.seq(),
            d_model: info.d_model,
            layers: out.memory,
        });
    }
}

fn check_experts(
    golden: &Path,
    st: &safetensors::SafeTensors<'_>,
    chunk: usize,
    trace: &[RouteTrace],
) {
    let mut compared = 0;
    for r in trace {
        let key = format!("sel.{chunk}.{}.{}.idx", r.layer, r.site);
        let Ok(view) = st.tensor(&key) else { continue };
        let want: Vec<i64> = view
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        assert_eq!(want.len(), r.idx.len(), "{key}: golden {:?}", view.shape());
        for (slot, (got, want)) in r.idx.chunks(r.k).zip(want.chunks(r.k)).enumerate() {
            let mut got: Vec<i64> = got.iter().map(|&i| i as i64).collect();
            let mut want = want.to_vec();
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(got, want, "{} {key} slot {slot}: experts", golden.display());
        }
        compared += 1;
    }
    let golden_sites = st
        .names()
        .iter()
        .filter(|n| n.starts_with(&format!("sel.{chunk}.")) && n.ends_with(".idx"))
        .count();
    assert_eq!(
        compared,
        golden_sites,
        "{}: every golden router compared",
        golden.display()
    );
}

#[test]
fn selected_experts_equal_the_goldens() {
    if device("selected_experts_equal_the_goldens").is_none() {
        return;
    }
    for name in ["rope", "xl", "switchall", "gated", "dense"] {
        let plan = compile_plan(name, WeightDType::F32, None, "device-experts");
        let dev = device("selected_experts_equal_the_goldens").expect("device");
        let backend = DeviceBackend::load(dev, &plan, WType::F32).expect("load");
        for golden in goldens(&model_dir(name)) {
            check_traced(&backend, &golden);
        }
        let _ = std::fs::remove_file(plan);
    }
}

fn opencl_session(plan: &Path) -> Session {
    let opts = SessionOptions {
        backend: BackendKind::OpenCl,
        ..Default::default()
    };
    let s = Session::load(plan, opts).expect("opencl session");
    assert_eq!(s.backend_name(), "opencl");
    s
}

/// Feeding a decoder one token at a time gives the full pass's logits, for a RoPE model (the
/// device KV cache, grown past its first capacity) and XL models (memory across chunks).
#[test]
fn token_by_token_decoding_equals_the_full_pass() {
    if device("token_by_token_decoding_equals_the_full_pass").is_none() {
        return;
    }
    for (name, chunk) in [("rope", None), ("xl", Some(16)), ("switchall", Some(16))] {
        let plan = compile_plan(name, WeightDType::F32, chunk, "device-decode");
        let session = opencl_session(&plan);
        let tokens: Vec<i64> = (0..40).map(|i| (i * 37 % 251) as i64).collect();
        let full = full_pass(&session, &tokens, chunk);
        let mut decoder = session.decoder().expect("decoder");
        let vocab = session.vocab_size();
        for (i, &t) in tokens.iter().enumerate() {
            let step = decoder.feed(&[t]).expect("step");
            let err = max_rel_err(&step, &full[i * vocab..(i + 1) * vocab]);
            assert!(err <= TOL, "{name} position {i}: max rel err {err}");
        }
        let _ = std::fs::remove_file(plan);
    }
}

/// The logits of `tokens` in one pass (RoPE), or chunk by chunk with the memory carried (XL).
fn full_pass(session: &Session, tokens: &[i64], chunk: Option<usize>) -> Vec<f32> {
    let Some(chunk) = chunk else {
        let batch = TokenBatch::single(tokens.to_vec());
        return session.logits(&batch).expect("logits").data;
    };
    let mut memory = None;
    let mut out = Vec::new();
    for piece in tokens.chunks(chunk) {
        let batch = TokenBatch::single(piece.to_vec());
        let (logits, next) = session
            .forward_chunk(&batch, memory.as_ref())
            .expect("chunk");
        out.extend(logits.data);
        memory = Some(next);
    }
    out
}

fn text_of(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn bpb(stdout: &str) -> f64 {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("bits_per_byte: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no bits_per_byte in {stdout}"))
}

/// `eval --executor opencl` gives the CPU's bits per byte; `run` the CPU's greedy text;
/// `bench` reports the opencl backend.
#[test]
fn run_eval_and_bench_take_the_opencl_executor() {
    if device("run_eval_and_bench_take_the_opencl_executor").is_none() {
        return;
    }
    let text = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/corpus/heldout-eval.txt");
    let part = tmp("eval").join("part.txt");
    let bytes = std::fs::read(&text).expect("heldout");
    std::fs::write(&part, &bytes[..4096]).expect("write part");
    let part = part.to_string_lossy().into_owned();
    for name in ["rope", "switchall"] {
        let m = model_dir(name).to_string_lossy().into_owned();
        let eval = |ex: &str| {
            text_of(&switchhead(
                &["eval", &m, "--text", &part, "--executor", ex],
                &[],
            ))
        };
        let ((cl, e1), (cpu, e2)) = (eval("opencl"), eval("cpu"));
        assert!(cl.contains("bits_per_byte"), "{name}: {e1}");
        assert!(cpu.contains("bits_per_byte"), "{name}: {e2}");
        let (a, b) = (bpb(&cl), bpb(&cpu));
        assert!((a - b).abs() < 1e-4, "{name}: opencl bpb {a} vs cpu {b}");
        let run = |ex: &str| {
            let args = [
                "run",
                &m,
                "--prompt",
                "And God said",
                "--max-tokens",
                "24",
                "--executor",
                ex,
                "--quiet",
            ];
            text_of(&switchhead(&args, &[])).0
        };
        assert_eq!(run("opencl"), run("cpu"), "{name}: greedy text");
    }
    let m = model_dir("xl").to_string_lossy().into_owned();
    let args = [
        "bench",
        &m,
        "--executor",
        "opencl",
        "--batch",
        "1",
        "--seq",
        "16",
        "--runs",
        "2",
        "--json",
    ];
    let (out, err) = text_of(&switchhead(&args, &[]));
    assert!(out.contains("\"backend\":\"opencl\""), "{out} {err}");
    let args = [
        "bench",
        &m,
        "--executor",
        "opencl",
        "--batch",
        "1",
        "--seq",
        "8",
        "--runs",
        "2",
        "--decode",
        "4",
    ];
    let (out, err) = text_of(&switchhead(&args, &[]));
    assert!(out.contains("opencl"), "{out} {err}");
}

fn one_line_failure(o: &Output, what: &str) -> String {
    let (_, err) = text_of(o);
    assert!(!o.status.success(), "{what}: succeeded");
    assert_eq!(err.trim().lines().count(), 1, "{what}: not one line: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
    err
}

#[test]
fn device_failures_are_one_clear_line() {
    let dir = tmp("errors");
    let out = dir.join("out.safetensors");
    let (m, o) = (
        model_dir("rope").to_string_lossy().into_owned(),
        out.to_string_lossy().into_owned(),
    );
    let g = model_dir("rope")
        .join("golden_short.safetensors")
        .to_string_lossy()
        .into_owned();
    let logits = [
        "logits",
        &m,
        "--tokens",
        &g,
        "-o",
        &o,
        "--executor",
        "opencl",
    ];
    // No platform: the ICD loader finds no vendor file.
    let empty = dir.join("no-vendors");
    std::fs::create_dir_all(&empty).expect("dir");
    let r = switchhead(&logits, &[("OCL_ICD_VENDORS", &empty.to_string_lossy())]);
    let err = one_line_failure(&r, "no platform");
    assert!(err.contains("opencl"), "{err}");
    assert!(!out.exists(), "no output on failure");
    if device("device_failures_are_one_clear_line").is_none() {
        return;
    }
    // Too little memory: said before uploading.
    let r = switchhead(&logits, &[("SWITCHHEAD_DEVICE_MEMORY_LIMIT_MIB", "1")]);
    let err = one_line_failure(&r, "memory");
    assert!(
        err.contains("has 1 MiB of memory") && err.contains("weights need"),
        "{err}"
    );
    assert!(!out.exists(), "no output on failure");
    // An ONNX file without the plan graph (not ours, or from an older compiler).
    let onnx = compile_onnx("rope", EmitOptions::default(), false, &dir);
    let mut proto =
        ModelProto::decode(std::fs::read(&onnx).expect("read").as_slice()).expect("decode");
    proto.metadata_props.retain(|e| e.key != PLAN_GRAPH_KEY);
    std::fs::write(&onnx, proto.encode_to_vec()).expect("write");
    let on = onnx.to_string_lossy().into_owned();
    let r = switchhead(
        &[
            "logits",
            &on,
            "--tokens",
            &g,
            "-o",
            &o,
            "--executor",
            "opencl",
        ],
        &[],
    );
    let err = one_line_failure(&r, "onnx");
    assert!(
        err.contains("rope.onnx") && err.contains(PLAN_GRAPH_KEY) && err.contains("recompile"),
        "{err}"
    );
    // bf16 is for device executors.
    let r = switchhead(
        &[
            "logits",
            &m,
            "--tokens",
            &g,
            "-o",
            &o,
            "--executor",
            "cpu",
            "--dtype",
            "bf16",
        ],
        &[],
    );
    let err = one_line_failure(&r, "bf16 on cpu");
    assert!(err.contains("device executors"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
