//! `switchhead-compile` as a user runs it: a good model compiles to a byte-identical file twice;
//! bad input exits non-zero with one clear line and leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tmp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchhead-compile-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn compile(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchhead-compile"))
        .args(args)
        .output()
        .expect("run switchhead-compile")
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn output_is_byte_identical_across_runs() {
    let dir = tmp("twice");
    let model = root().join("testdata/models/switchall");
    let (a, b) = (dir.join("a.onnx"), dir.join("b.onnx"));
    for out in [&a, &b] {
        let o = compile(&[&s(&model), "-o", &s(out)]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let (x, y) = (std::fs::read(&a).expect("a"), std::fs::read(&b).expect("b"));
    assert!(x.len() > 1000 && x == y, "outputs differ or are empty");
}

/// Runs a failing compile into an empty folder; checks one line naming `needle`, nothing left.
fn expect_failure(model: &Path, out: &Path, extra: &[&str], needle: &str) {
    let mut args = vec![s(model), "-o".into(), s(out)];
    args.extend(extra.iter().map(|a| a.to_string()));
    let o = compile(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected failure ({needle})");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(needle), "'{needle}' not in: {stderr}");
    if let Some(dir) = out.parent().filter(|d| d.exists()) {
        let left: Vec<_> = std::fs::read_dir(dir)
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

#[test]
fn bad_input_gives_one_line_and_leaves_nothing() {
    let out_dir = tmp("bad-out");
    let out = out_dir.join("m.onnx");
    let inputs = tmp("bad-in");
    expect_failure(
        &inputs.join("missing.safetensors"),
        &out,
        &[],
        "missing.safetensors",
    );
    let corrupt = inputs.join("corrupt");
    std::fs::create_dir_all(&corrupt).expect("dir");
    std::fs::copy(
        root().join("testdata/models/xl/config.json"),
        corrupt.join("config.json"),
    )
    .expect("config");
    let bytes = std::fs::read(root().join("testdata/models/xl/model.safetensors")).expect("model");
    std::fs::write(corrupt.join("model.safetensors"), &bytes[..bytes.len() / 2])
        .expect("truncated");
    expect_failure(&corrupt, &out, &[], "model.safetensors");
    let xl = root().join("testdata/models/xl");
    expect_failure(
        &xl,
        &out,
        &["--set", "d_model=100"],
        "config says d_model = 100",
    );
    expect_failure(
        &xl,
        &out_dir.join("no/such/dir/m.onnx"),
        &[],
        "no/such/dir/m.onnx",
    );
    expect_failure(
        &xl,
        &out,
        &["--stop-after", "no-such-pass"],
        "unknown pass `no-such-pass`",
    );
}

#[test]
fn passes_lists_the_pipeline() {
    let o = compile(&["--passes"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        vec![
            "infer-shapes",
            "const-fold",
            "fold-layernorm",
            "merge-projections",
            "dead-code"
        ]
    );
    let o = compile(&["-O0", "--passes"]);
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "infer-shapes");
    let o = compile(&["-O7", "--passes"]);
    assert_eq!(o.status.code(), Some(2), "clap rejects an unknown level");
}

#[test]
fn shplan_output_is_a_plan_byte_identical_across_runs() {
    let dir = tmp("plan");
    let model = root().join("testdata/models/xl");
    let (a, b, c) = (
        dir.join("a.shplan"),
        dir.join("b.shplan"),
        dir.join("c.bin"),
    );
    for (out, extra) in [(&a, None), (&b, None), (&c, Some("--format=plan"))] {
        let mut args = vec![s(&model), "-o".into(), s(out)];
        args.extend(extra.map(String::from));
        let o = compile(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let read = |p: &Path| std::fs::read(p).expect("plan");
    let (x, y, z) = (read(&a), read(&b), read(&c));
    assert!(
        x.starts_with(b"\x89SHPLAN\n") && x == y && x == z,
        "plans differ"
    );
    let left: Vec<_> = std::fs::read_dir(&dir).expect("dir").collect();
    assert_eq!(left.len(), 3, "temporary files left behind");
}
