//! `switchhead synth` and `switchhead inspect`: preset parameter counts through the library,
//! and one end-to-end run of the built binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use switchhead_compiler::model::thousands;
use switchhead_compiler::synth::{PRESETS, parameter_count, preset};

fn count(name: &str) -> u64 {
    parameter_count(&preset(name).unwrap_or_else(|| panic!("preset {name}")))
}

#[test]
fn paper_parameter_counts() {
    assert_eq!(thousands(count("c4-47m")), "47,247,416");
    assert_eq!(thousands(count("c4-262m")), "262,370,744");
    assert_eq!(thousands(count("wt103-rope-243m")), "243,347,984");
    // Paper: 262,479,968, which includes the dense XL baseline's u/v biases; ours has none.
    assert_eq!(thousands(count("dense-c4-262m")), "262,443,068");
}

#[test]
fn every_preset_matches_its_nominal_size() {
    for name in PRESETS {
        let nominal: f64 = name
            .rsplit('-')
            .next()
            .and_then(|s| s.strip_suffix('m'))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("preset name {name} ends in <N>m"));
        let millions = count(name) as f64 / 1e6;
        assert!(
            (millions - nominal).abs() / nominal < 0.01,
            "{name}: {millions}M"
        );
    }
}

#[test]
fn thousands_separators() {
    assert_eq!(thousands(0), "0");
    assert_eq!(thousands(999), "999");
    assert_eq!(thousands(1000), "1,000");
    assert_eq!(thousands(1_234_567), "1,234,567");
}

fn tmpdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchhead-cli-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn switchhead(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchhead"))
        .args(args)
        .output()
        .expect("run switchhead")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn synth_then_inspect_c4_47m() {
    let dir = tmpdir("c4-47m");
    stdout(&switchhead(&[
        "synth",
        "--preset",
        "c4-47m",
        "-o",
        s(&dir),
        "--seed",
        "3",
    ]));
    assert!(dir.join("model.safetensors").is_file());
    assert!(dir.join("config.json").is_file());
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .collect();
    assert_eq!(leftovers.len(), 2, "only the two outputs remain");
    let text = stdout(&switchhead(&["inspect", s(&dir)]));
    assert!(text.contains("parameters: 47,247,416"), "{text}");
    assert!(text.contains("layout: training"), "{text}");
    assert!(
        text.contains("d_model: 412, layers: 16, heads: 2, d_head: 76"),
        "{text}"
    );
    let over = stdout(&switchhead(&["inspect", s(&dir), "--set", "moe_k=2"]));
    assert!(over.contains("k=2"), "{over}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn synth_custom_sizes_in_bf16() {
    let dir = tmpdir("custom");
    let args = [
        "synth",
        "-o",
        s(&dir),
        "--d-model",
        "16",
        "--n-layers",
        "2",
        "--n-heads",
        "2",
        "--n-experts",
        "4",
        "--moe-k",
        "2",
        "--d-head",
        "8",
        "--d-ff",
        "32",
        "--vocab-size",
        "50",
        "--pos-encoding",
        "rope",
        "--dtype",
        "bf16",
    ];
    stdout(&switchhead(&args));
    let text = stdout(&switchhead(&["inspect", s(&dir.join("model.safetensors"))]));
    assert!(text.contains("dtype: bf16"), "{text}");
    assert!(text.contains("RoPE"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn synth_errors_leave_nothing_behind() {
    let dir = tmpdir("bad");
    let out = switchhead(&["synth", "--preset", "nope", "-o", s(&dir)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("c4-47m"));
    let out = switchhead(&["synth", "--preset", "c4-47m", "--moe-k", "9", "-o", s(&dir)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("moe_k"));
    assert!(!dir.exists(), "nothing written");
    let out = switchhead(&["synth", "--d-model", "16", "-o", s(&dir)]);
    assert!(!out.status.success());
    assert!(!dir.exists());
}

#[test]
fn inspect_reports_a_missing_model() {
    let out = switchhead(&["inspect", "/nonexistent/model.safetensors"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/model.safetensors"), "{err}");
}

/// `inspect` on a plan verifies it and summarises it: the gated testdata model (2 layers, a
/// dense FFN, no XL memory) has its FFN and output weights in panels and the rest row-major;
/// `--ir` lists the nodes; a truncated plan is a one-line error.
#[test]
fn inspect_a_plan() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/models/gated");
    let dir = tmpdir("plan");
    std::fs::create_dir_all(&dir).expect("dir");
    let plan = dir.join("gated.shplan");
    let compiled = Command::new(env!("CARGO_BIN_EXE_switchhead-compile"))
        .args([s(&model), "-o", s(&plan)])
        .output()
        .expect("run switchhead-compile");
    assert!(compiled.status.success(), "{compiled:?}");
    let text = stdout(&switchhead(&["inspect", s(&plan)]));
    assert!(text.contains("format version 2"), "{text}");
    assert!(text.contains("checksum ok"), "{text}");
    assert!(
        text.contains("model: d_model 72, vocab 256, layers 2"),
        "{text}"
    );
    // the merged q/k/head-gate weight, w1 and w2 of two layers, and the output projection
    assert!(text.contains("f32 panels: 7 tensors"), "{text}");
    assert!(
        text.contains(
            "nodes: 15 (Add 4, DenseFfn 2, Embedding 1, LayerNorm 5, Linear 1, MoEAttention 2)"
        ),
        "{text}"
    );
    let ops = stdout(&switchhead(&["inspect", s(&plan), "--ir"]));
    assert_eq!(ops.lines().count(), 15, "{ops}");
    assert!(
        ops.lines()
            .any(|l| l.starts_with('%') && l.contains("= DenseFfn(")),
        "{ops}"
    );
    let bytes = std::fs::read(&plan).expect("read");
    std::fs::write(&plan, &bytes[..bytes.len() / 2]).expect("truncate");
    let bad = switchhead(&["inspect", s(&plan)]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("truncated") && err.contains("gated.shplan"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
