//! `switchhead bench` through the built binary on a tiny testdata model: the text and JSON
//! output formats, and one-line errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn model(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/models")
        .join(name)
}

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchhead"))
        .arg("bench")
        .args(args)
        .output()
        .expect("run switchhead bench")
}

fn ms_after(text: &str, prefix: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"));
    let value = line[prefix.len()..]
        .split_whitespace()
        .next()
        .expect("value");
    value
        .parse()
        .unwrap_or_else(|_| panic!("not a number in {line:?}"))
}

#[test]
fn text_output_has_median_spread_and_throughput() {
    let m = model("rope");
    let o = bench(&[
        &m.to_string_lossy(),
        "--batch",
        "2",
        "--seq",
        "8",
        "--runs",
        "2",
        "--threads",
        "1",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let median = ms_after(&out, "median: ");
    assert!(median > 0.0, "{out}");
    let spread = out
        .lines()
        .find(|l| l.starts_with("spread: "))
        .expect("spread line");
    for key in ["min ", "p10 ", "p90 ", "max "] {
        assert!(spread.contains(key), "{spread}");
    }
    let tps = ms_after(&out, "throughput: ");
    assert!((tps - 16.0 / (median / 1e3)).abs() / tps < 1e-3, "{out}");
    assert!(
        out.contains("forward [2, 8], 2 runs after 1 warmup"),
        "{out}"
    );
}

#[test]
fn json_output_is_one_object_with_the_statistics() {
    let m = model("xl");
    let o = bench(&[
        &m.to_string_lossy(),
        "--seq",
        "8",
        "--runs",
        "2",
        "--warmup",
        "0",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["mode"], "forward");
    assert_eq!(v["runs"], 2);
    assert_eq!(v["times_ms"].as_array().map(Vec::len), Some(2));
    let (min, med, max) = (
        v["min_ms"].as_f64(),
        v["median_ms"].as_f64(),
        v["max_ms"].as_f64(),
    );
    let (min, med, max) = (min.expect("min"), med.expect("median"), max.expect("max"));
    assert!(min <= med && med <= max, "{v}");
    for key in ["p10_ms", "p90_ms", "tokens_per_s", "load_ms", "threads"] {
        assert!(v[key].is_number(), "{key} in {v}");
    }
    // the process's own peak resident memory, where Linux reports it (the binary alone is
    // megabytes)
    if cfg!(target_os = "linux") {
        let rss = v["peak_rss_kib"].as_u64().expect("peak_rss_kib");
        assert!(rss > 1024, "peak RSS {rss} KiB: {v}");
    }
}

#[test]
fn bad_arguments_give_one_error_line() {
    let m = model("rope");
    let o = bench(&[&m.to_string_lossy(), "--runs", "0"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains("--runs"),
        "{err}"
    );
}

#[test]
fn decode_times_single_token_steps() {
    let m = model("rope");
    let args = [
        &*m.to_string_lossy(),
        "--seq",
        "8",
        "--decode",
        "3",
        "--runs",
        "2",
        "--json",
    ];
    let o = bench(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["mode"], "decode");
    assert_eq!(v["decode_steps"], 3);
    assert_eq!(
        v["times_ms"].as_array().map(Vec::len),
        Some(6),
        "3 steps x 2 runs: {v}"
    );
    let (med, tps) = (v["median_ms"].as_f64(), v["tokens_per_s"].as_f64());
    let (med, tps) = (med.expect("median"), tps.expect("tokens/s"));
    assert!(
        (tps - 1e3 / med).abs() / tps < 1e-6,
        "batch 1: tokens/s = 1 / step: {v}"
    );
    let text = bench(&[
        &m.to_string_lossy(),
        "--seq",
        "8",
        "--decode",
        "2",
        "--runs",
        "1",
    ]);
    let out = String::from_utf8_lossy(&text.stdout);
    assert!(
        out.contains("decode 2 steps after a 8-token prompt"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("median: ") && l.ends_with("ms per step")),
        "{out}"
    );
}

/// `--profile` on a plan reports every op type of the model once per pass, with the node
/// counts of the graph and shares that add up to the whole; on anything else it is a one-line
/// error.
#[test]
fn profile_times_each_op_type_of_a_plan() {
    let plan = std::env::temp_dir().join(format!("bench-profile-{}.shplan", std::process::id()));
    let compiled = Command::new(env!("CARGO_BIN_EXE_switchhead-compile"))
        .arg(model("gated"))
        .arg("-o")
        .arg(&plan)
        .output()
        .expect("run switchhead-compile");
    assert!(compiled.status.success(), "{compiled:?}");
    let path = plan.to_string_lossy().to_string();
    let o = bench(&[&path, "--seq", "8", "--runs", "2", "--profile", "--json"]);
    let _ = std::fs::remove_file(&plan);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let ops = v["profile"].as_array().expect("profile");
    let nodes = |op: &str| {
        ops.iter()
            .find(|t| t["op"] == op)
            .and_then(|t| t["nodes"].as_u64())
    };
    // 2 layers: attention and FFN per layer, 2 LayerNorms per layer plus the final one.
    assert_eq!(nodes("MoEAttention"), Some(2), "{v}");
    assert_eq!(nodes("DenseFfn"), Some(2), "{v}");
    assert_eq!(nodes("LayerNorm"), Some(5), "{v}");
    let share: f64 = ops.iter().filter_map(|t| t["share"].as_f64()).sum();
    assert!((share - 1.0).abs() < 1e-6, "{v}");

    let m = model("gated");
    let o = bench(&[
        &m.to_string_lossy(),
        "--seq",
        "8",
        "--runs",
        "1",
        "--profile",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--profile") && err.contains(".shplan"),
        "{err}"
    );
}
