//! Clear, typed errors: domains, versions, unknown ops, bad files, bad tokens, backends.

mod common;

use common::*;
use switchhead_runtime::backend::probe;
use switchhead_runtime::{BackendKind, RuntimeError, Session, SessionOptions, TokenBatch};
use tract_onnx::pb;

fn sigma_model(domain: &str, op: &str, version: Option<i64>) -> pb::ModelProto {
    let (d, n_e, g) = (8, 4, 4);
    let mut r = rng(1);
    let attrs = vec![
        attr_i("experts", n_e),
        attr_i("expert_size", g),
        attr_i("k", 2),
    ];
    let (n_e, g) = (n_e as usize, g as usize);
    model(ModelSpec {
        d,
        embedding: random(&mut r, &[d, d], 1.0),
        body: vec![node(
            op,
            domain,
            &["x", "router", "keys", "values"],
            "y",
            attrs,
        )],
        weights: vec![
            init("router", &random(&mut r, &[n_e, d], 1.0)),
            init("keys", &random(&mut r, &[n_e, d, g], 1.0)),
            init("values", &random(&mut r, &[n_e, g, d], 1.0)),
        ],
        xl: false,
        switchhead_version: version,
    })
}

fn load(proto: &pb::ModelProto, tag: &str) -> Result<Session, RuntimeError> {
    Session::load(write(proto, tag), SessionOptions::default())
}

#[test]
fn wrong_domain_is_rejected() {
    let err = load(
        &sigma_model("com.other", "SigmaMoE", Some(1)),
        "wrong-domain",
    )
    .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::UnsupportedDomain { domain, .. } if domain == "com.other"),
        "{err}"
    );
}

#[test]
fn wrong_domain_version_is_rejected() {
    let err = load(&sigma_model(DOMAIN, "SigmaMoE", Some(2)), "wrong-version").unwrap_err();
    assert!(
        matches!(
            err,
            RuntimeError::UnsupportedDomainVersion {
                version: 2,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn missing_domain_import_is_rejected() {
    let err = load(&sigma_model(DOMAIN, "SigmaMoE", None), "no-import").unwrap_err();
    assert!(
        matches!(err, RuntimeError::UnsupportedDomain { .. }),
        "{err}"
    );
}

#[test]
fn unknown_custom_op_is_rejected() {
    let err = load(&sigma_model(DOMAIN, "Relu", Some(1)), "unknown-custom").unwrap_err();
    assert!(
        matches!(&err, RuntimeError::UnknownOp { op_type, .. } if op_type == "Relu"),
        "{err}"
    );
}

#[test]
fn unknown_standard_op_is_rejected() {
    let err = load(&sigma_model("", "NoSuchOp", Some(1)), "unknown-std").unwrap_err();
    assert!(
        matches!(&err, RuntimeError::UnknownOp { op_type, .. } if op_type == "NoSuchOp"),
        "{err}"
    );
}

#[test]
fn bad_attribute_is_rejected() {
    let mut proto = sigma_model(DOMAIN, "SigmaMoE", Some(1));
    let graph = proto.graph.as_mut().expect("graph");
    let node = graph
        .node
        .iter_mut()
        .find(|n| n.op_type == "SigmaMoE")
        .expect("node");
    node.attribute[2] = attr_i("k", 9);
    let err = load(&proto, "bad-attr").unwrap_err();
    assert!(
        matches!(err, RuntimeError::InvalidAttribute { attr: "k", .. }),
        "{err}"
    );
}

#[test]
fn not_an_onnx_file_names_the_file() {
    let path = std::env::temp_dir().join(format!("not-onnx-{}.onnx", std::process::id()));
    std::fs::write(&path, "this is a text file, not a protobuf\n").expect("write");
    let err = Session::load(&path, SessionOptions::default()).unwrap_err();
    assert!(matches!(err, RuntimeError::NotOnnx { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn missing_file_names_the_file() {
    let err = Session::load("/nonexistent/model.onnx", SessionOptions::default()).unwrap_err();
    assert!(matches!(err, RuntimeError::Io { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/model.onnx"), "{err}");
}

#[test]
fn cuda_backend_is_unavailable() {
    let path = write(&sigma_model(DOMAIN, "SigmaMoE", Some(1)), "cuda");
    let options = SessionOptions {
        backend: BackendKind::Cuda,
        ..Default::default()
    };
    // Never a panic: a typed error whose reason is the probe's (no feature, no libcuda, no
    // device), or on a GPU host the reason the backend cannot run the model.
    let err = Session::load(path, options).unwrap_err();
    let RuntimeError::BackendUnavailable {
        backend: "cuda",
        reason,
    } = &err
    else {
        panic!("expected BackendUnavailable, got {err}");
    };
    match probe() {
        Err(why) => assert_eq!(reason, &why.to_string()),
        Ok(device) => assert!(reason.contains(&device.name), "{reason}"),
    }
    assert!(!err.to_string().contains('\n'), "one line: {err}");
}

#[test]
fn auto_backend_falls_back_to_the_cpu() {
    let session = load(&sigma_model(DOMAIN, "SigmaMoE", Some(1)), "auto").expect("load");
    assert_eq!(session.backend_name(), "cpu");
    let logits = session
        .logits(&TokenBatch::new(1, 2, vec![0, 1]).expect("tokens"))
        .expect("run");
    assert_eq!(logits.data.len(), 2 * session.vocab_size());
}

#[test]
fn bad_tokens_are_rejected() {
    let session = load(&sigma_model(DOMAIN, "SigmaMoE", Some(1)), "tokens").expect("load");
    let err = session
        .logits(&TokenBatch::new(2, 2, vec![0, 1, 2, 8]).expect("tokens"))
        .unwrap_err();
    assert!(
        matches!(
            err,
            RuntimeError::TokenOutOfRange {
                token: 8,
                batch: 1,
                position: 1,
                vocab: 8
            }
        ),
        "{err}"
    );
    let err = session.logits(&TokenBatch::single(vec![-1])).unwrap_err();
    assert!(
        matches!(err, RuntimeError::TokenOutOfRange { token: -1, .. }),
        "{err}"
    );
    let err = session.logits(&TokenBatch::single(vec![])).unwrap_err();
    assert!(matches!(err, RuntimeError::EmptyInput { .. }), "{err}");
    let err = session
        .logits(&TokenBatch {
            batch: 2,
            seq: 2,
            tokens: vec![1],
        })
        .unwrap_err();
    assert!(matches!(err, RuntimeError::ShapeMismatch { .. }), "{err}");
    let err = session
        .forward_chunk(&TokenBatch::single(vec![1]), None)
        .unwrap_err();
    assert!(matches!(err, RuntimeError::NotXl(_)), "{err}");
}
