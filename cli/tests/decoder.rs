//! The runtime's stateful decoder on compiled testdata models: token-by-token decoding gives
//! the golden logits of a full pass (KV cache for RoPE models in both ONNX forms, XL memory
//! within a chunk and across a chunk boundary), and misuse gives typed errors.

mod common;

use std::path::{Path, PathBuf};

use common::{TOL, compile_plan, max_rel_err, model_dir};

use switchhead_compiler::import::{LoadOptions, load_model};
use switchhead_compiler::ir::lower;
use switchhead_compiler::onnx::{EmitOptions, WeightDType, emit, write};
use switchhead_compiler::tensor_io::{parse, read_bytes, read_f32, read_tokens};
use switchhead_runtime::{Logits, RuntimeError, Session, SessionOptions, TokenBatch};

fn compile(name: &str, tag: &str, opts: EmitOptions) -> PathBuf {
    let model = load_model(&model_dir(name), &LoadOptions::default()).expect("load");
    let proto = emit(&lower(&model), &model.weights, &opts).expect("emit");
    let out = std::env::temp_dir().join(format!("dec-{name}-{tag}-{}.onnx", std::process::id()));
    write(proto, &out).expect("write");
    out
}

/// Tokens and logits of chunk `chunk` of a golden file.
fn golden(name: &str, file: &str, chunk: &str) -> (TokenBatch, Vec<f32>) {
    let path = model_dir(name).join(format!("{file}.safetensors"));
    let bytes = read_bytes(&path).expect("golden");
    let st = parse(&path, &bytes).expect("golden");
    let t = read_tokens(&path, &st, &format!("tokens{chunk}")).expect("tokens");
    let ids = (0..t.batch())
        .flat_map(|b| t.sequence(b).to_vec())
        .collect();
    let tokens = TokenBatch::new(t.batch(), t.seq(), ids).expect("batch");
    let logits = read_f32(&path, &st, &format!("logits{chunk}")).expect("logits");
    (tokens, logits.data().to_vec())
}

/// Positions `from..to` of every row.
fn slice(tokens: &TokenBatch, from: usize, to: usize) -> TokenBatch {
    let ids = tokens
        .tokens
        .chunks_exact(tokens.seq)
        .flat_map(|row| row[from..to].to_vec())
        .collect();
    TokenBatch::new(tokens.batch, to - from, ids).expect("slice")
}

/// Decodes `tokens` as a prefill of `prefill` then single tokens; logits joined `[B, T, V]`.
fn decode(session: &Session, tokens: &TokenBatch, prefill: usize) -> Vec<f32> {
    let mut dec = session.decoder_batch(tokens.batch).expect("decoder");
    let mut steps: Vec<Logits> = vec![dec.step(&slice(tokens, 0, prefill)).expect("prefill")];
    for t in prefill..tokens.seq {
        steps.push(dec.step(&slice(tokens, t, t + 1)).expect("step"));
    }
    assert_eq!(dec.position(), tokens.seq);
    let vocab = session.vocab_size();
    (0..tokens.batch)
        .flat_map(|b| {
            steps
                .iter()
                .flat_map(move |l| l.data[b * l.seq * vocab..(b + 1) * l.seq * vocab].to_vec())
        })
        .collect()
}

fn rope_case(name: &str, decompose: bool) {
    let opts = EmitOptions {
        decompose,
        kv_cache: true,
        ..Default::default()
    };
    let path = compile(name, if decompose { "kvd" } else { "kv" }, opts);
    rope_check(name, &path, if decompose { "decompose" } else { "custom" });
}

fn rope_check(name: &str, path: &Path, form: &str) {
    let session = Session::load(path, SessionOptions::default()).expect("session");
    let (tokens, want) = golden(name, "golden_long", "");
    let full = session
        .logits(&tokens)
        .expect("full pass with an empty cache");
    let err_full = max_rel_err(&full.data, &want);
    let err_dec = max_rel_err(&decode(&session, &tokens, 20), &want);
    println!("{name} {form}: full {err_full:.3e}, decoded {err_dec:.3e}");
    assert!(
        err_full <= TOL && err_dec <= TOL,
        "{name}: {err_full} {err_dec}"
    );
    let _ = std::fs::remove_file(path);
}

#[test]
fn rope_kv_cache_decoding_matches_golden() {
    rope_case("rope", false);
    rope_case("rope", true);
}

#[test]
fn dense_and_gated_kv_cache_decoding_matches_golden() {
    for name in ["dense", "gated"] {
        rope_case(name, false);
    }
}

/// XL models, compiled with chunk_size 19 (the golden_mem chunk length): decoding 38 tokens
/// one by one crosses the chunk boundary and must equal the two chunked full passes.
fn xl_case(name: &str) {
    let opts = EmitOptions {
        chunk_size: Some(19),
        ..Default::default()
    };
    xl_check(name, &compile(name, "xl", opts));
}

fn xl_check(name: &str, path: &Path) {
    let session = Session::load(path, SessionOptions::default()).expect("session");
    let (c0, want0) = golden(name, "golden_mem", "0");
    let (c1, want1) = golden(name, "golden_mem", "1");
    assert_eq!((c0.seq, c1.seq), (19, 19), "golden_mem layout");
    let mut dec = session.decoder_batch(c0.batch).expect("decoder");
    let mut got = [Vec::new(), Vec::new()];
    for (chunk, tokens) in [&c0, &c1].into_iter().enumerate() {
        let mut steps = vec![dec.step(&slice(tokens, 0, 3)).expect("prefill")];
        steps.extend((3..tokens.seq).map(|t| dec.step(&slice(tokens, t, t + 1)).expect("step")));
        let vocab = session.vocab_size();
        got[chunk] = (0..tokens.batch)
            .flat_map(|b| {
                steps
                    .iter()
                    .flat_map(move |l| l.data[b * l.seq * vocab..(b + 1) * l.seq * vocab].to_vec())
            })
            .collect();
    }
    let (e0, e1) = (max_rel_err(&got[0], &want0), max_rel_err(&got[1], &want1));
    println!("{name}: chunk 0 {e0:.3e}, chunk 1 (with memory) {e1:.3e}");
    assert!(e0 <= TOL && e1 <= TOL, "{name}: {e0} {e1}");
    let _ = std::fs::remove_file(path);
}

#[test]
fn xl_decoding_matches_chunked_golden() {
    xl_case("xl");
    xl_case("switchall");
}

#[test]
fn decoder_errors_are_typed() {
    let plain = compile("gated", "plain", EmitOptions::default());
    let session = Session::load(&plain, SessionOptions::default()).expect("session");
    let err = session.decoder().expect_err("no kv cache");
    assert!(matches!(err, RuntimeError::NoKvCache { .. }), "{err}");
    assert!(err.to_string().contains("--kv-cache"), "{err}");
    let kv = compile(
        "gated",
        "errs",
        EmitOptions {
            kv_cache: true,
            ..Default::default()
        },
    );
    let session = Session::load(&kv, SessionOptions::default()).expect("session");
    let mut dec = session.decoder().expect("decoder");
    let err = dec.feed(&[1, 999]).expect_err("out of vocabulary");
    assert!(
        matches!(err, RuntimeError::TokenOutOfRange { token: 999, .. }),
        "{err}"
    );
    let err = dec.feed(&[]).expect_err("empty");
    assert!(matches!(err, RuntimeError::EmptyInput { .. }), "{err}");
    let two = TokenBatch::new(2, 1, vec![1, 2]).expect("batch");
    assert!(matches!(
        dec.step(&two),
        Err(RuntimeError::ShapeMismatch { .. })
    ));
    assert_eq!(
        dec.position(),
        0,
        "failed steps must not advance the decoder"
    );
    // A context limit restarts the cache instead of growing past it.
    let mut dec = session.decoder().expect("decoder").with_context(Some(8));
    for t in 0..20 {
        let logits = dec.feed(&[(t % 50) as i64]).expect("step past the context");
        assert!(logits.iter().all(|v| v.is_finite()));
    }
    assert_eq!(dec.position(), 20);
    for p in [plain, kv] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn native_plan_decoding_matches_golden() {
    for name in ["rope", "dense", "gated"] {
        let path = compile_plan(name, WeightDType::F32, None, "dec");
        rope_check(name, &path, "plan");
    }
    for name in ["xl", "switchall"] {
        let path = compile_plan(name, WeightDType::F32, Some(19), "dec");
        xl_check(name, &path);
    }
}

/// 150 tokens decoded one at a time on the native plan (the cache grows in place from 64
/// rows to 128 and 256, copying only when it grows) give the full pass's logits; so do
/// batch-1 decoders sharing steps (`Decoder::step_each`), whose caches grow the same way.
#[test]
fn growing_kv_cache_decoding_matches_the_full_pass() {
    let path = compile_plan("rope", WeightDType::F32, None, "grow");
    let session = Session::load(&path, SessionOptions::default()).expect("session");
    let (batch, seq) = (2, 150);
    let ids: Vec<i64> = (0..batch * seq)
        .map(|i| ((i * 37 + 11) % 256) as i64)
        .collect();
    let tokens = TokenBatch::new(batch, seq, ids).expect("tokens");
    let full = session.logits(&tokens).expect("full pass");
    let err = max_rel_err(&decode(&session, &tokens, 5), &full.data);
    assert!(err <= TOL, "batch decoder against the full pass: {err}");
    let mut decoders: Vec<_> = (0..batch)
        .map(|_| session.decoder().expect("decoder"))
        .collect();
    let vocab = session.vocab_size();
    let mut rows = vec![Vec::new(); batch];
    for t in 0..seq {
        let next: Vec<i64> = (0..batch).map(|b| tokens.tokens[b * seq + t]).collect();
        let mut each: Vec<_> = decoders.iter_mut().collect();
        let logits = switchhead_runtime::Decoder::step_each(&mut each, &next).expect("shared step");
        for (row, l) in rows.iter_mut().zip(logits) {
            row.extend(l);
        }
    }
    let shared: Vec<f32> = rows.concat();
    assert_eq!(shared.len(), batch * seq * vocab);
    let err = max_rel_err(&shared, &full.data);
    assert!(err <= TOL, "shared steps against the full pass: {err}");
    let _ = std::fs::remove_file(path);
}
