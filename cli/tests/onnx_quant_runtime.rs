//! Quantized ONNX files (`switchhead-compile --quantize int8|int4`, default, `--decompose` and
//! `--kv-cache` forms) run by `switchhead logits` (tract, the `DequantizeLinear` weights folded
//! to f32) and by stock ONNX Runtime agree to 1e-4 relative; `scripts/onnx_quant_check.py`
//! also runs the ONNX checker and prints the distance to the f32 golden logits. Needs the
//! Python named by `SWITCHHEAD_PYTHON` (scripts/test.sh sets it up); without it the test is
//! skipped with a printed reason, except under CI, where that is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (file stem, model, switchhead-compile flags).
const FILES: [(&str, &str, &[&str]); 7] = [
    ("rope.int8", "rope", &["--quantize", "int8"]),
    ("rope.int4", "rope", &["--quantize", "int4"]),
    (
        "rope.int4.decompose",
        "rope",
        &["--quantize", "int4", "--decompose"],
    ),
    (
        "rope.int8.kv",
        "rope",
        &["--quantize", "int8", "--kv-cache"],
    ),
    (
        "switchall.int4g64",
        "switchall",
        &["--quantize", "int4", "--group-size", "64"],
    ),
    ("xl.int8", "xl", &["--quantize", "int8"]),
    (
        "gated.int4g128",
        "gated",
        &["--quantize", "int4", "--group-size", "128"],
    ),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(mut cmd: Command, what: &str) {
    let o = cmd.output().expect(what);
    assert!(
        o.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Compiles every file and writes our runtime's logits beside it for each golden file.
fn prepare(dir: &Path) {
    for (stem, model, flags) in FILES {
        let file = dir.join(format!("{stem}.onnx"));
        let mut compile = Command::new(env!("CARGO_BIN_EXE_switchhead-compile"));
        compile
            .arg(root().join("testdata/models").join(model))
            .arg("-o")
            .arg(&file)
            .args(flags);
        run(compile, &format!("compile {stem}"));
        for golden in ["golden_long", "golden_short"] {
            let mut logits = Command::new(env!("CARGO_BIN_EXE_switchhead"));
            logits
                .arg("logits")
                .arg(&file)
                .arg("--tokens")
                .arg(root().join(format!("testdata/models/{model}/{golden}.safetensors")))
                .arg("-o")
                .arg(dir.join(format!("{stem}.{golden}.ours.safetensors")))
                .args(["--executor", "cpu"]);
            run(logits, &format!("switchhead logits {stem} {golden}"));
        }
    }
}

#[test]
fn onnx_runtime_and_switchhead_agree_on_quantized_files() {
    let Some(python) = std::env::var_os("SWITCHHEAD_PYTHON") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must set SWITCHHEAD_PYTHON (run scripts/test.sh)"
        );
        println!(
            "skipped: SWITCHHEAD_PYTHON is not set (scripts/test.sh sets up a venv with onnxruntime)"
        );
        return;
    };
    let dir = std::env::temp_dir().join(format!("switchhead-ort-quant-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    prepare(&dir);
    let files: Vec<String> = FILES.iter().map(|(s, m, _)| format!("{s}:{m}")).collect();
    let o = Command::new(python)
        .arg(root().join("scripts/onnx_quant_check.py"))
        .arg("--dir")
        .arg(&dir)
        .arg("--files")
        .arg(files.join(","))
        .arg("--models-root")
        .arg(root().join("testdata/models"))
        .output()
        .expect("run scripts/onnx_quant_check.py");
    println!("{}", String::from_utf8_lossy(&o.stdout));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        o.status.success(),
        "onnx_quant_check.py failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}
