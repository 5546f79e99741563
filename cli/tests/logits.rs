//! `switchhead logits` end to end through the built binary: golden token files in, logits out,
//! compared with the golden logits; bad inputs give one clear error line and no output file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use safetensors::tensor::{Dtype, TensorView};
use switchhead_compiler::tensor_io::{parse, read_bytes, read_f32};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tmp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchhead-logits-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn switchhead(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchhead"))
        .args(args)
        .output()
        .expect("run switchhead")
}

fn max_rel_err(path_a: &Path, path_b: &Path, name: &str) -> f32 {
    max_rel_err_of(path_a, name, path_b, name)
}

/// Max abs difference of tensor `name_a` of `path_a` from `name_b` of `path_b`, over the
/// latter's largest magnitude.
fn max_rel_err_of(path_a: &Path, name_a: &str, path_b: &Path, name_b: &str) -> f32 {
    let (ta, tb) = (read_named(path_a, name_a), read_named(path_b, name_b));
    assert_eq!(ta.shape(), tb.shape(), "{name_a} vs {name_b}");
    let scale = tb.data().iter().fold(0f32, |m, v| m.max(v.abs()));
    ta.data()
        .iter()
        .zip(tb.data())
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

fn read_named(path: &Path, name: &str) -> switchhead_ops::Tensor {
    let bytes = read_bytes(path).expect("read");
    read_f32(path, &parse(path, &bytes).expect("parse"), name).expect(name)
}

fn run_logits(model: &Path, golden: &Path, out: &Path, executor: &str) {
    let args = [
        "logits",
        &model.to_string_lossy(),
        "--tokens",
        &golden.to_string_lossy(),
        "-o",
        &out.to_string_lossy(),
        "--executor",
        executor,
    ];
    let o = switchhead(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

const EXECUTORS: [&str; 3] = ["auto", "cpu", "reference"];

#[test]
fn logits_match_golden_single_chunk() {
    let dir = root().join("testdata/models/rope");
    for executor in EXECUTORS {
        let out = tmp(&format!("single-{executor}")).join("out.safetensors");
        run_logits(&dir, &dir.join("golden_long.safetensors"), &out, executor);
        let err = max_rel_err(&out, &dir.join("golden_long.safetensors"), "logits");
        assert!(err <= 1e-4, "{executor}: max rel err {err}");
    }
}

#[test]
fn logits_carry_xl_memory_across_chunks() {
    let dir = root().join("testdata/models/switchall");
    for executor in EXECUTORS {
        let out = tmp(&format!("chunks-{executor}")).join("out.safetensors");
        run_logits(&dir, &dir.join("golden_mem.safetensors"), &out, executor);
        for name in ["logits0", "logits1"] {
            let err = max_rel_err(&out, &dir.join("golden_mem.safetensors"), name);
            assert!(err <= 1e-4, "{executor} {name}: max rel err {err}");
        }
    }
}

/// Chunks for a RoPE model run in order, each on its own (as the training code runs them):
/// each chunk's logits are the golden logits of its tokens alone, whatever came before.
#[test]
fn rope_chunks_run_each_on_its_own() {
    let dir = root().join("testdata/models/rope");
    let work = tmp("rope-chunks");
    let (short, long) = (
        dir.join("golden_short.safetensors"),
        dir.join("golden_long.safetensors"),
    );
    let chunks = work.join("chunks.safetensors");
    write_chunks(&chunks, &[(&long, "tokens"), (&short, "tokens")]);
    for executor in EXECUTORS {
        let out = work.join(format!("out-{executor}.safetensors"));
        run_logits(&dir, &chunks, &out, executor);
        for (i, golden) in [&long, &short].into_iter().enumerate() {
            let err = max_rel_err_of(&out, &format!("logits{i}"), golden, "logits");
            assert!(err <= 1e-4, "{executor} chunk {i}: max rel err {err}");
        }
    }
}

/// `sources` (file, tensor) copied as `tokens0`, `tokens1`, ... into one file.
fn write_chunks(path: &Path, sources: &[(&Path, &str)]) {
    let mut tensors = Vec::new();
    for (i, (file, name)) in sources.iter().enumerate() {
        let bytes = read_bytes(file).expect("read");
        let st = parse(file, &bytes).expect("parse");
        let view = st.tensor(name).expect("tokens");
        tensors.push((
            format!("tokens{i}"),
            view.shape().to_vec(),
            view.data().to_vec(),
        ));
    }
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, shape, data)| {
            (
                n.clone(),
                TensorView::new(Dtype::I64, shape.clone(), data).expect("view"),
            )
        })
        .collect();
    let data = safetensors::serialize(views, None).expect("serialize");
    std::fs::write(path, data).expect("write chunks");
}

/// The CPU executor also runs the ONNX file `switchhead-compile` wrote.
#[test]
fn cpu_executor_runs_a_compiled_onnx_file() {
    let dir = root().join("testdata/models/xl");
    let work = tmp("onnx");
    let onnx = work.join("xl.onnx");
    let o = Command::new(env!("CARGO_BIN_EXE_switchhead-compile"))
        .args([&dir.to_string_lossy(), "-o", &onnx.to_string_lossy()])
        .output()
        .expect("run switchhead-compile");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = work.join("out.safetensors");
    run_logits(&onnx, &dir.join("golden_mem.safetensors"), &out, "cpu");
    for name in ["logits0", "logits1"] {
        let err = max_rel_err(&out, &dir.join("golden_mem.safetensors"), name);
        assert!(err <= 1e-4, "{name}: max rel err {err}");
    }
}

fn write_tokens(path: &Path, shape: Vec<usize>, ids: &[i64]) {
    let bytes: Vec<u8> = ids.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = TensorView::new(Dtype::I64, shape, &bytes).expect("view");
    let data = safetensors::serialize(vec![("tokens".to_string(), view)], None).expect("serialize");
    std::fs::write(path, data).expect("write tokens");
}

fn expect_error(model: &Path, tokens: &Path, out: &Path, executor: &str, needle: &str) {
    let args = [
        "logits",
        &model.to_string_lossy(),
        "--tokens",
        &tokens.to_string_lossy(),
        "-o",
        &out.to_string_lossy(),
        "--executor",
        executor,
    ];
    let o = switchhead(&args);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "{executor}: expected failure for {needle}"
    );
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "{executor}: one line: {stderr}"
    );
    assert!(
        stderr.contains(needle),
        "{executor}: '{needle}' not in: {stderr}"
    );
    assert!(
        !out.exists(),
        "{executor}: output written despite the error"
    );
}

#[test]
fn bad_inputs_give_one_clear_line_and_no_output() {
    let dir = tmp("bad");
    let model = root().join("testdata/models/rope");
    let out = dir.join("out.safetensors");
    let oov = dir.join("oov.safetensors");
    write_tokens(&oov, vec![1, 3], &[1, 256, 2]);
    let empty = dir.join("empty.safetensors");
    write_tokens(&empty, vec![1, 0], &[]);
    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"not a safetensors file").expect("write");
    for executor in EXECUTORS {
        let oov_msg = "256 at batch 0, position 1 is outside the vocabulary";
        expect_error(&model, &oov, &out, executor, oov_msg);
        expect_error(&model, &empty, &out, executor, "empty input");
        expect_error(
            &model,
            &dir.join("missing.safetensors"),
            &out,
            executor,
            "missing.safetensors",
        );
        expect_error(
            &model,
            &garbage,
            &out,
            executor,
            "not a valid safetensors file",
        );
    }
    let not_onnx = dir.join("model.onnx");
    std::fs::write(&not_onnx, b"garbage").expect("write");
    expect_error(&not_onnx, &oov, &out, "cpu", "model.onnx");
    expect_error(
        &not_onnx,
        &oov,
        &out,
        "reference",
        "runs checkpoints, not ONNX files",
    );
}

/// `--executor cuda` on a host without a usable device: exit code 1, one line naming the
/// reason (no feature, no libcuda, no device), no output file, never a panic.
#[test]
fn cuda_executor_without_a_device_fails_in_one_line() {
    let Err(why) = switchhead_runtime::backend::probe() else {
        eprintln!("SKIPPED: a CUDA device is present");
        return;
    };
    let dir = root().join("testdata/models/rope");
    let work = tmp("cuda");
    let out = work.join("out.safetensors");
    let tokens = dir.join("golden_short.safetensors");
    expect_error(&dir, &tokens, &out, "cuda", &why.to_string());
    let o = switchhead(&[
        "logits",
        &dir.to_string_lossy(),
        "--tokens",
        &tokens.to_string_lossy(),
        "-o",
        &out.to_string_lossy(),
        "--executor",
        "cuda",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.starts_with("error: backend cuda is unavailable: "),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
