//! Stock ONNX Runtime on the files `switchhead-compile` writes: for every testdata model, both
//! the default (`ai.switchhead` nodes with function bodies) and the `--decompose` file pass
//! `onnx.checker.check_model(full_check=True)` and match the golden logits (max relative error
//! 1e-4), XL memory over two chunks included. Runs `scripts/onnx_check.py` with the Python
//! named by `SWITCHHEAD_PYTHON` (scripts/test.sh sets it up); without it the test is skipped
//! with a printed reason, except under CI, where that is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

const MODELS: [&str; 5] = ["rope", "xl", "switchall", "dense", "gated"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn compile(model: &str, out: &Path, decompose: bool) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchhead-compile"));
    cmd.arg(root().join("testdata/models").join(model))
        .arg("-o")
        .arg(out);
    if decompose {
        cmd.arg("--decompose");
    }
    let o = cmd.output().expect("run switchhead-compile");
    assert!(
        o.status.success(),
        "{model}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn onnx_runtime_matches_golden_for_every_model_and_form() {
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
    let dir = std::env::temp_dir().join(format!("switchhead-ort-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for model in MODELS {
        compile(model, &dir.join(format!("{model}.onnx")), false);
        compile(model, &dir.join(format!("{model}.decompose.onnx")), true);
    }
    let o = Command::new(python)
        .arg(root().join("scripts/onnx_check.py"))
        .arg("--dir")
        .arg(&dir)
        .arg("--models-root")
        .arg(root().join("testdata/models"))
        .output()
        .expect("run scripts/onnx_check.py");
    println!("{}", String::from_utf8_lossy(&o.stdout));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        o.status.success(),
        "onnx_check.py failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}
