//! Tokenizers end to end: the `spm` test model (a 1,000-piece SentencePiece vocabulary) matches
//! its golden logits, `switchhead eval` on it gives the PyTorch reference's bits per byte (to 4
//! decimals) and per-token perplexity, through its `tokenizer.model` and through the same
//! vocabulary as a tokenizer.json; `run` streams decoded text; the runtime's `Tokenizer` finds,
//! encodes, decodes and streams both kinds; a model without a tokenizer fails in one line that
//! names the fix.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{TOL, compile_plan, model_dir, worst_error};
use switchhead_compiler::onnx::WeightDType;
use switchhead_runtime::{Session, SessionOptions, Tokenizer, TokenizerError};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn heldout() -> PathBuf {
    root().join("testdata/corpus/heldout-eval.txt")
}

fn tokenizer_json() -> PathBuf {
    root().join("testdata/tokenizers/kjv1000.json")
}

fn switchhead(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchhead"))
        .args(args)
        .output()
        .expect("run switchhead")
}

/// `heldout_eval_txt` of the model's `metrics.json`.
fn metrics(name: &str) -> serde_json::Value {
    let path = model_dir(name).join("metrics.json");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("metrics")).expect("json");
    json["heldout_eval_txt"].clone()
}

/// The value after `key: ` on stdout.
fn field(stdout: &str, key: &str) -> f64 {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} line in {stdout}"))
}

fn eval(extra: &[&str]) -> String {
    let (m, text) = (path_str(&model_dir("spm")), path_str(&heldout()));
    let mut args = vec!["eval", &m, "--text", &text];
    args.extend_from_slice(extra);
    let o = switchhead(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn check_eval(stdout: &str) {
    let want = metrics("spm");
    let (bpb, ppl) = (field(stdout, "bits_per_byte"), field(stdout, "perplexity"));
    let want_bpb = want["trained_bpb"].as_f64().expect("trained_bpb");
    let want_ppl = want["trained_token_perplexity"]
        .as_f64()
        .expect("perplexity");
    println!(
        "spm: bits_per_byte {bpb:.6} (PyTorch {want_bpb:.6}), perplexity {ppl:.6} ({want_ppl:.6})"
    );
    assert!((bpb - want_bpb).abs() < 5e-5, "{bpb} vs {want_bpb}");
    assert!(
        (ppl - want_ppl).abs() < 1e-4 * want_ppl,
        "{ppl} vs {want_ppl}"
    );
    let counts = format!(
        "predicted: {} tokens covering {} of {} bytes",
        want["predicted"], want["predicted_bytes"], want["bytes"]
    );
    assert!(stdout.contains(&counts), "{stdout}\nwants {counts}");
}

#[test]
fn spm_model_matches_its_golden_logits() {
    let plan = compile_plan("spm", WeightDType::F32, None, "tokenizer-spm");
    let session = Session::load(&plan, SessionOptions::default()).expect("session");
    assert_eq!(session.info().vocab_size, 1000);
    let err = worst_error("spm", &session);
    assert!(err <= TOL, "spm: max rel err {err}");
    let _ = std::fs::remove_file(plan);
}

#[test]
fn eval_spm_matches_pytorch_through_the_sentencepiece_model() {
    let stdout = eval(&[]);
    assert!(stdout.contains("SentencePiece"), "{stdout}");
    check_eval(&stdout);
}

#[test]
fn eval_spm_matches_pytorch_through_tokenizer_json() {
    let stdout = eval(&["--tokenizer", &path_str(&tokenizer_json())]);
    assert!(stdout.contains("tokenizer.json"), "{stdout}");
    check_eval(&stdout);
}

fn generate(extra: &[&str]) -> String {
    let m = path_str(&model_dir("spm"));
    let mut args = vec!["run", &m, "--prompt", "And God said", "--max-tokens", "20"];
    args.extend_from_slice(extra);
    let o = switchhead(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("generated 20 tokens"));
    String::from_utf8(o.stdout).expect("run writes UTF-8 text")
}

#[test]
fn run_streams_decoded_text_with_either_tokenizer() {
    let greedy = generate(&[]);
    assert!(greedy.starts_with("And God said"), "{greedy}");
    // 20 tokens of this vocabulary are longer than 20 bytes: the output is decoded pieces.
    assert!(greedy.len() > "And God said".len() + 30, "{greedy:?}");
    assert_eq!(
        greedy,
        generate(&["--tokenizer", &path_str(&tokenizer_json())])
    );
    let sampled = ["--temperature", "0.9", "--top-p", "0.95", "--seed", "7"];
    assert_eq!(
        generate(&sampled),
        generate(&sampled),
        "same seed, same text"
    );
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tokenizer-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for f in ["model.safetensors", "config.json"] {
        std::fs::copy(model_dir("spm").join(f), dir.join(f)).expect("copy");
    }
    dir
}

fn one_error_line(args: &[&str], needles: &[&str]) {
    let o = switchhead(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    for needle in needles {
        assert!(err.contains(needle), "{args:?}: {err} lacks {needle}");
    }
    assert!(o.stdout.is_empty(), "nothing on stdout after an error");
}

#[test]
fn a_model_without_its_tokenizer_fails_in_one_line_naming_the_fix() {
    let dir = temp_dir("none");
    let m = path_str(&dir);
    let fix = [
        "1000 tokens",
        "tokenizer.json",
        "tokenizer.model",
        "--tokenizer PATH",
    ];
    one_error_line(&["run", &m, "--prompt", "And"], &fix);
    one_error_line(&["eval", &m, "--text", &path_str(&heldout())], &fix);
    // A byte-level model given a 1,000-token vocabulary.
    let gated = path_str(&model_dir("gated"));
    let json = path_str(&tokenizer_json());
    let args = ["run", &gated, "--prompt", "a", "--tokenizer", &json];
    one_error_line(&args, &["has 1000 tokens", "vocabulary has 256"]);
    let readme = path_str(&root().join("README.md"));
    let args = ["run", &m, "--prompt", "a", "--tokenizer", &readme];
    one_error_line(&args, &["README.md", "not a valid SentencePiece model"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn for_model_finds_the_tokenizer_in_the_model_directory() {
    let spm = model_dir("spm");
    let t = Tokenizer::for_model(&spm, None, 1000).expect("spm tokenizer");
    assert!(
        t.describe().starts_with("SentencePiece"),
        "{}",
        t.describe()
    );
    assert_eq!(t.vocab_size(), 1000);
    // A checkpoint file finds the tokenizer beside it.
    let t = Tokenizer::for_model(&spm.join("model.safetensors"), None, 1000).expect("beside");
    assert_eq!(t.path(), Some(spm.join("tokenizer.model").as_path()));
    let bytes = Tokenizer::for_model(&model_dir("gated"), None, 256).expect("bytes");
    assert!(bytes.is_byte_level());
    let dir = temp_dir("two");
    for name in ["a.model", "b.model"] {
        std::fs::copy(spm.join("tokenizer.model"), dir.join(name)).expect("copy");
    }
    let err = Tokenizer::for_model(&dir, None, 1000).expect_err("ambiguous");
    assert!(matches!(err, TokenizerError::Ambiguous { .. }), "{err}");
    // Beside a model file (which may sit in a temp folder) only the names count.
    let file = dir.join("model.safetensors");
    let err = Tokenizer::for_model(&file, None, 1000).expect_err("not named");
    assert!(matches!(err, TokenizerError::NotFound { .. }), "{err}");
    std::fs::rename(dir.join("a.model"), dir.join("tokenizer.model")).expect("rename");
    let t = Tokenizer::for_model(&file, None, 1000).expect("named");
    assert!(
        t.describe().starts_with("SentencePiece"),
        "{}",
        t.describe()
    );
    // tokenizer.json takes precedence over *.model files.
    std::fs::copy(tokenizer_json(), dir.join("tokenizer.json")).expect("copy");
    let t = Tokenizer::for_model(&dir, None, 1000).expect("json");
    assert!(
        t.describe().starts_with("tokenizer.json"),
        "{}",
        t.describe()
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn both() -> [Tokenizer; 2] {
    let sp = Tokenizer::from_file(&model_dir("spm").join("tokenizer.model")).expect("sp");
    let hf = Tokenizer::from_file(&tokenizer_json()).expect("json");
    [sp, hf]
}

#[test]
fn both_kinds_encode_the_heldout_text_alike_and_cover_every_byte() {
    let text = std::fs::read(heldout()).expect("heldout");
    let [sp, hf] = both();
    let (a, b) = (
        sp.encode_bytes(&text).expect("sp"),
        hf.encode_bytes(&text).expect("hf"),
    );
    assert_eq!(
        a, b,
        "the same vocabulary gives the same tokens and coverage"
    );
    assert_eq!(Some(a.ids.len() as u64), metrics("spm")["tokens"].as_u64());
    assert_eq!(a.covered.iter().sum::<usize>(), text.len());
    for t in [&sp, &hf] {
        assert_eq!(t.decode(&a.ids).expect("decode").as_bytes(), &text[..]);
    }
    let err = sp.decode(&[1000]).expect_err("out of range");
    assert!(
        matches!(err, TokenizerError::UnknownId { id: 1000, .. }),
        "{err}"
    );
}

#[test]
fn streamed_pieces_add_up_to_the_text() {
    // Characters no piece spells come as byte-fallback pieces, split across tokens.
    let text =
        "In the beginning, \u{dc}n\u{ef}c\u{f8}d\u{e9} \u{65e5}\u{672c} \u{1f389}\n  two  spaces\t";
    let [sp, hf] = both();
    for t in [&sp, &hf, &Tokenizer::bytes()] {
        let ids = t.encode(text).expect("encode");
        assert!(ids.len() > 10, "{}: {ids:?}", t.describe());
        let mut stream = t.stream();
        let mut out = Vec::new();
        for &id in &ids {
            out.extend(stream.step(id).expect("step"));
        }
        assert_eq!(String::from_utf8_lossy(&out), text, "{}", t.describe());
        assert_eq!(t.decode(&ids).expect("decode"), text, "{}", t.describe());
    }
}
