//! Stock ONNX Runtime on the files `switchhead-compile` writes: for every testdata model, the
//! default (`ai.switchhead` nodes with function bodies), the `--decompose` file (routed experts
//! dense, `--experts dense`) and the `--decompose --experts gather` file all pass
//! `onnx.checker.check_model(full_check=True)` and match the golden logits (max relative error
//! 1e-4), XL memory over two chunks included; the RoPE models' `--kv-cache` files (all three forms)
//! also match with an empty past and under incremental decoding (prefill 20 tokens, then one at
//! a time, present fed back as past). Runs `scripts/onnx_check.py` with the Python
//! named by `SWITCHHEAD_PYTHON` (scripts/test.sh sets it up); without it the test is skipped
//! with a printed reason, except under CI, where that is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

const MODELS: [&str; 5] = ["rope", "xl", "switchall", "dense", "gated"];
const ROPE_MODELS: [&str; 3] = ["rope", "dense", "gated"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The forms onnx_check.py knows: file infix (after the model name) and compile flags.
const FORMS: [(&str, &[&str]); 3] = [
    ("", &[]),
    (".decompose", &["--decompose"]),
    (".gather", &["--decompose", "--experts", "gather"]),
];

fn compile_cmd(model: &str, out: &Path, flags: &[&str], kv_cache: bool) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchhead-compile"));
    cmd.arg(root().join("testdata/models").join(model))
        .arg("-o")
        .arg(out)
        .args(flags);
    if kv_cache {
        cmd.arg("--kv-cache");
    }
    cmd
}

fn compile(model: &str, out: &Path, flags: &[&str], kv_cache: bool) {
    let o = compile_cmd(model, out, flags, kv_cache)
        .output()
        .expect("run switchhead-compile");
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
    for (infix, flags) in FORMS {
        for model in MODELS {
            compile(
                model,
                &dir.join(format!("{model}{infix}.onnx")),
                flags,
                false,
            );
        }
        for model in ROPE_MODELS {
            compile(
                model,
                &dir.join(format!("{model}.kv{infix}.onnx")),
                flags,
                true,
            );
        }
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

#[test]
fn kv_cache_is_refused_for_xl_in_one_line() {
    let dir = std::env::temp_dir().join(format!("switchhead-kv-xl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = dir.join("xl.kv.onnx");
    let o = compile_cmd("xl", &out, &[], true)
        .output()
        .expect("run switchhead-compile");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!o.status.success(), "--kv-cache on an XL model must fail");
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(
        lines[0].starts_with("error: ")
            && lines[0].contains("--kv-cache")
            && lines[0].contains("memory.{i}"),
        "{err}"
    );
    assert!(!out.exists());
}
