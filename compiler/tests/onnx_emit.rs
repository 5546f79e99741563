//! ONNX emission: every testdata model in both forms, decoded back with prost, checked for
//! structure (opsets, custom-domain nodes, functions, interface, metadata) and byte-identical
//! reruns; the KV-cache interface of the RoPE models in both forms, and its refusal for XL.
//! Numerics are checked by `scripts/onnx_check.py` (ONNX Runtime against the golden logits).

use std::path::{Path, PathBuf};

use prost::Message;
use switchhead_compiler::import::{LoadOptions, load_model};
use switchhead_compiler::ir::lower;
use switchhead_compiler::onnx::proto::{
    ModelProto, ValueInfoProto, data_location, data_type, tensor_shape_proto::dimension::Value,
    type_proto,
};
use switchhead_compiler::onnx::{
    DOMAIN, EmitError, EmitOptions, OPSET, PLAN_GRAPH_KEY, WeightDType, emit, write,
    write_with_limit,
};
use switchhead_ops::plan::PlanGraph;

const MODELS: [&str; 5] = ["rope", "xl", "switchall", "dense", "gated"];
const ROPE_MODELS: [&str; 3] = ["rope", "dense", "gated"];

fn model_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/models")
        .join(name)
}

fn emit_bytes(name: &str, opts: EmitOptions) -> (Vec<u8>, switchhead_compiler::Model) {
    let model = load_model(&model_dir(name), &LoadOptions::default()).expect("load");
    let proto = emit(&lower(&model), &model.weights, &opts).expect("emit");
    (proto.encode_to_vec(), model)
}

fn dims(v: &ValueInfoProto) -> (i32, Vec<String>) {
    let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.clone())
    else {
        panic!("{} has no tensor type", v.name)
    };
    let shape = t.shape.expect("shape");
    let dims = shape
        .dim
        .iter()
        .map(|d| match d.value.as_ref().expect("dim") {
            Value::DimValue(n) => n.to_string(),
            Value::DimParam(p) => p.clone(),
        });
    (t.elem_type, dims.collect())
}

fn check_interface(m: &ModelProto, model: &switchhead_compiler::Model) {
    let g = m.graph.as_ref().expect("graph");
    let c = &model.config;
    let xl = g.input.len() > 1;
    assert_eq!(g.input[0].name, "tokens");
    assert_eq!(
        dims(&g.input[0]),
        (data_type::INT64, vec!["batch".into(), "seq".into()])
    );
    assert_eq!(g.output[0].name, "logits");
    assert_eq!(
        dims(&g.output[0]),
        (
            data_type::FLOAT,
            vec!["batch".into(), "seq".into(), c.vocab_size.to_string()]
        )
    );
    let d = c.d_model.to_string();
    if xl {
        assert_eq!(g.input.len(), 1 + c.n_layers);
        assert_eq!(g.output.len(), 1 + c.n_layers);
        for i in 0..c.n_layers {
            assert_eq!(g.input[1 + i].name, format!("memory.{i}"));
            assert_eq!(
                dims(&g.input[1 + i]),
                (
                    data_type::FLOAT,
                    vec!["batch".into(), "mem_len".into(), d.clone()]
                )
            );
            assert_eq!(g.output[1 + i].name, format!("memory_out.{i}"));
            assert_eq!(
                dims(&g.output[1 + i]),
                (
                    data_type::FLOAT,
                    vec!["batch".into(), "seq".into(), d.clone()]
                )
            );
        }
    } else {
        assert_eq!(g.output.len(), 1);
    }
    assert_eq!(g.initializer.len(), model.weights.len());
}

#[test]
fn default_form_has_custom_nodes_and_functions() {
    for name in MODELS {
        let (bytes, model) = emit_bytes(name, EmitOptions::default());
        let m = ModelProto::decode(bytes.as_slice()).expect("decode");
        assert_eq!(m.ir_version, 8);
        let opsets: Vec<(&str, i64)> = m
            .opset_import
            .iter()
            .map(|o| (o.domain.as_str(), o.version))
            .collect();
        assert_eq!(opsets, vec![("", OPSET), (DOMAIN, 1)], "{name}");
        let g = m.graph.as_ref().expect("graph");
        let custom: Vec<&str> = g
            .node
            .iter()
            .filter(|n| n.domain == DOMAIN)
            .map(|n| n.op_type.as_str())
            .collect();
        let attn = custom.iter().filter(|&&o| o == "MoEAttention").count();
        assert_eq!(
            attn, model.config.n_layers,
            "{name}: one MoEAttention per layer"
        );
        let sigma = custom.iter().filter(|&&o| o == "SigmaMoE").count();
        let want_sigma = if name == "switchall" {
            model.config.n_layers
        } else {
            0
        };
        assert_eq!(sigma, want_sigma, "{name}");
        let mut fns: Vec<&str> = m.functions.iter().map(|f| f.name.as_str()).collect();
        fns.sort();
        let want: Vec<&str> = if want_sigma > 0 {
            vec!["MoEAttention", "SigmaMoE"]
        } else {
            vec!["MoEAttention"]
        };
        assert_eq!(fns, want, "{name}");
        for f in &m.functions {
            assert_eq!(f.domain, DOMAIN);
            assert_eq!(f.opset_import.len(), 1);
            assert_eq!(
                (f.opset_import[0].domain.as_str(), f.opset_import[0].version),
                ("", OPSET)
            );
            assert!(
                f.node.iter().all(|n| n.domain.is_empty()),
                "{name}: function body is standard ops"
            );
            assert!(
                f.node
                    .iter()
                    .all(|n| !["Loop", "Scan", "If"].contains(&n.op_type.as_str()))
            );
            let node = g.node.iter().find(|n| n.op_type == f.name).expect("a call");
            assert_eq!(node.input.len(), f.input.len());
            let names: Vec<&str> = node.attribute.iter().map(|a| a.name.as_str()).collect();
            assert_eq!(
                names,
                f.attribute.iter().map(String::as_str).collect::<Vec<_>>()
            );
        }
        check_interface(&m, &model);
    }
}

#[test]
fn decompose_form_is_standard_ops_only() {
    for name in MODELS {
        let opts = EmitOptions {
            decompose: true,
            ..Default::default()
        };
        let (bytes, model) = emit_bytes(name, opts);
        let m = ModelProto::decode(bytes.as_slice()).expect("decode");
        assert_eq!(m.opset_import.len(), 1);
        assert_eq!(
            (m.opset_import[0].domain.as_str(), m.opset_import[0].version),
            ("", OPSET)
        );
        assert!(m.functions.is_empty());
        let g = m.graph.as_ref().expect("graph");
        assert!(g.node.iter().all(|n| n.domain.is_empty()), "{name}");
        assert!(
            g.node
                .iter()
                .all(|n| !["Loop", "Scan", "If"].contains(&n.op_type.as_str()))
        );
        check_interface(&m, &model);
    }
}

#[test]
fn emission_is_deterministic() {
    for name in MODELS {
        for (decompose, kv_cache) in [(false, false), (true, false), (false, true), (true, true)] {
            if kv_cache && !ROPE_MODELS.contains(&name) {
                continue;
            }
            let opts = EmitOptions {
                decompose,
                kv_cache,
                ..Default::default()
            };
            let (a, _) = emit_bytes(name, opts);
            let (b, _) = emit_bytes(name, opts);
            assert!(
                a == b,
                "{name} decompose={decompose} kv={kv_cache}: emissions differ"
            );
        }
    }
}

/// The `switchhead.*` facts, without the embedded plan graph (checked on its own).
fn metadata(m: &ModelProto) -> Vec<(String, String)> {
    m.metadata_props
        .iter()
        .filter(|e| e.key != PLAN_GRAPH_KEY)
        .map(|e| (e.key.clone(), e.value.clone()))
        .collect()
}

/// The embedded plan graph: present, valid, and naming exactly the model's initializers
/// (by their stored name: `.bf16`/`.f16` for cast ones), with their shapes.
fn check_plan_graph(m: &ModelProto, what: &str) {
    let entry = m
        .metadata_props
        .iter()
        .find(|e| e.key == PLAN_GRAPH_KEY)
        .unwrap_or_else(|| panic!("{what}: no {PLAN_GRAPH_KEY}"));
    let plan = PlanGraph::from_json(entry.value.as_bytes()).expect("plan graph parses");
    let len = plan
        .weights
        .iter()
        .map(|w| w.offset + w.nbytes)
        .max()
        .unwrap_or(0);
    plan.validate(len.next_multiple_of(64))
        .expect("plan graph validates");
    let graph = m.graph.as_ref().expect("graph");
    let inits: Vec<(String, Vec<usize>)> = graph
        .initializer
        .iter()
        .map(|t| {
            let name = t.name.trim_end_matches(".bf16").trim_end_matches(".f16");
            (
                name.to_string(),
                t.dims.iter().map(|&d| d as usize).collect(),
            )
        })
        .collect();
    let weights: Vec<(String, Vec<usize>)> = plan
        .weights
        .iter()
        .map(|w| (w.name.clone(), w.shape.clone()))
        .collect();
    assert_eq!(weights, inits, "{what}: plan weights are the initializers");
}

#[test]
fn metadata_describes_the_model() {
    for name in MODELS {
        for (decompose, kv_cache) in [(false, false), (true, false), (false, true), (true, true)] {
            if kv_cache && !ROPE_MODELS.contains(&name) {
                continue;
            }
            let model = load_model(&model_dir(name), &LoadOptions::default()).expect("load");
            let c = &model.config;
            let opts = EmitOptions {
                decompose,
                kv_cache,
                chunk_size: c.chunk_size,
                ..Default::default()
            };
            let m = emit(&lower(&model), &model.weights, &opts).expect("emit");
            let pos = if ROPE_MODELS.contains(&name) {
                "rope"
            } else {
                "xl"
            };
            let mut want = vec![
                ("n_layers", c.n_layers.to_string()),
                ("d_model", c.d_model.to_string()),
                ("n_heads", c.n_heads.to_string()),
                ("d_head", c.d_head.to_string()),
                ("vocab_size", c.vocab_size.to_string()),
                ("pos_encoding", pos.to_string()),
                ("kv_cache", if kv_cache { "1" } else { "0" }.to_string()),
            ];
            let chunk = c.chunk_size.expect("testdata configs give chunk_size");
            want.push(("chunk_size", chunk.to_string()));
            want.push(("format_version", "1".to_string()));
            let want: Vec<(String, String)> = want
                .into_iter()
                .map(|(k, v)| (format!("switchhead.{k}"), v))
                .collect();
            let what = format!("{name} decompose={decompose} kv={kv_cache}");
            assert_eq!(metadata(&m), want, "{what}");
            check_plan_graph(&m, &what);
        }
        // Without a known chunk size the key is left out, the rest stays.
        let (bytes, _) = emit_bytes(name, EmitOptions::default());
        let m = ModelProto::decode(bytes.as_slice()).expect("decode");
        let keys: Vec<String> = metadata(&m).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys.len(), 8, "{name}: {keys:?}");
        assert!(!keys.contains(&"switchhead.chunk_size".to_string()));
    }
}

/// `[batch, H, len, dh]` f32 with the given dim_param for len.
fn cache_dims(model: &switchhead_compiler::Model, len: &str) -> (i32, Vec<String>) {
    let c = &model.config;
    (
        data_type::FLOAT,
        vec![
            "batch".into(),
            c.n_heads.to_string(),
            len.into(),
            c.d_head.to_string(),
        ],
    )
}

fn check_kv_interface(m: &ModelProto, model: &switchhead_compiler::Model, name: &str) {
    let g = m.graph.as_ref().expect("graph");
    let c = &model.config;
    let n = c.n_layers;
    assert_eq!(g.input.len(), 1 + 2 * n, "{name}");
    assert_eq!(g.output.len(), 1 + 2 * n, "{name}");
    assert_eq!(g.input[0].name, "tokens");
    assert_eq!(
        dims(&g.input[0]),
        (data_type::INT64, vec!["batch".into(), "seq".into()])
    );
    assert_eq!(g.output[0].name, "logits");
    assert_eq!(
        dims(&g.output[0]),
        (
            data_type::FLOAT,
            vec!["batch".into(), "seq".into(), c.vocab_size.to_string()]
        )
    );
    for i in 0..n {
        for (j, kind) in ["key", "value"].into_iter().enumerate() {
            let input = &g.input[1 + 2 * i + j];
            assert_eq!(input.name, format!("past_key_values.{i}.{kind}"));
            assert_eq!(dims(input), cache_dims(model, "past_sequence_length"));
            let output = &g.output[1 + 2 * i + j];
            assert_eq!(output.name, format!("present.{i}.{kind}"));
            assert_eq!(dims(output), cache_dims(model, "total_sequence_length"));
        }
    }
    assert_eq!(g.initializer.len(), model.weights.len());
}

#[test]
fn kv_cache_default_form_extends_the_custom_op() {
    for name in ROPE_MODELS {
        let opts = EmitOptions {
            kv_cache: true,
            ..Default::default()
        };
        let (bytes, model) = emit_bytes(name, opts);
        let m = ModelProto::decode(bytes.as_slice()).expect("decode");
        check_kv_interface(&m, &model, name);
        let (plain, _) = emit_bytes(name, EmitOptions::default());
        let plain = ModelProto::decode(plain.as_slice()).expect("decode");
        let g = m.graph.as_ref().expect("graph");
        let calls: Vec<_> = g
            .node
            .iter()
            .filter(|n| n.domain == DOMAIN && n.op_type == "MoEAttention")
            .collect();
        let plain_calls: Vec<_> = plain
            .graph
            .as_ref()
            .expect("graph")
            .node
            .iter()
            .filter(|n| n.domain == DOMAIN && n.op_type == "MoEAttention")
            .collect();
        assert_eq!(calls.len(), model.config.n_layers, "{name}");
        for (i, (call, old)) in calls.iter().zip(&plain_calls).enumerate() {
            let mut want_in = old.input.clone();
            want_in.extend([
                format!("past_key_values.{i}.key"),
                format!("past_key_values.{i}.value"),
            ]);
            assert_eq!(call.input, want_in, "{name} layer {i}");
            let mut want_out = old.output.clone();
            want_out.extend([format!("present.{i}.key"), format!("present.{i}.value")]);
            assert_eq!(call.output, want_out, "{name} layer {i}");
            let kv = call.attribute.iter().find(|a| a.name == "kv_cache");
            assert_eq!(kv.map(|a| a.i), Some(1), "{name}: kv_cache=1");
            assert_eq!(call.attribute.len(), old.attribute.len() + 1);
        }
        let f = m
            .functions
            .iter()
            .find(|f| f.name == "MoEAttention")
            .expect("function");
        let old = plain
            .functions
            .iter()
            .find(|f| f.name == "MoEAttention")
            .expect("function");
        let mut want_in = old.input.clone();
        want_in.extend(["past_key".to_string(), "past_value".to_string()]);
        assert_eq!(f.input, want_in, "{name}");
        assert_eq!(f.output, ["y", "present_key", "present_value"], "{name}");
        assert!(f.attribute.contains(&"kv_cache".to_string()));
        assert!(f.node.iter().all(|n| n.domain.is_empty()));
        assert!(
            f.node
                .iter()
                .all(|n| !["Loop", "Scan", "If"].contains(&n.op_type.as_str()))
        );
    }
}

#[test]
fn kv_cache_decompose_form_is_standard_ops_only() {
    for name in ROPE_MODELS {
        let opts = EmitOptions {
            decompose: true,
            kv_cache: true,
            ..Default::default()
        };
        let (bytes, model) = emit_bytes(name, opts);
        let m = ModelProto::decode(bytes.as_slice()).expect("decode");
        check_kv_interface(&m, &model, name);
        assert!(m.functions.is_empty());
        assert_eq!(m.opset_import.len(), 1);
        let g = m.graph.as_ref().expect("graph");
        assert!(g.node.iter().all(|n| n.domain.is_empty()), "{name}");
        assert!(
            g.node
                .iter()
                .all(|n| !["Loop", "Scan", "If"].contains(&n.op_type.as_str()))
        );
    }
}

#[test]
fn kv_cache_is_refused_for_xl_models() {
    for name in ["xl", "switchall"] {
        for decompose in [false, true] {
            let model = load_model(&model_dir(name), &LoadOptions::default()).expect("load");
            let opts = EmitOptions {
                decompose,
                kv_cache: true,
                ..Default::default()
            };
            let err = emit(&lower(&model), &model.weights, &opts).expect_err("XL + kv cache");
            assert!(matches!(err, EmitError::KvCacheXl), "{name}: {err}");
            let text = err.to_string();
            assert!(
                text.contains("memory.{i}") && !text.contains('\n'),
                "{text}"
            );
        }
    }
}

#[test]
fn half_weights_are_cast_to_f32() {
    for (dtype, ty, suffix) in [
        (WeightDType::F16, data_type::FLOAT16, "f16"),
        (WeightDType::BF16, data_type::BFLOAT16, "bf16"),
    ] {
        let (bytes, model) = emit_bytes(
            "gated",
            EmitOptions {
                dtype,
                ..Default::default()
            },
        );
        let m = ModelProto::decode(bytes.as_slice()).expect("decode");
        let g = m.graph.as_ref().expect("graph");
        for t in &g.initializer {
            assert_eq!(t.data_type, ty);
            assert!(t.name.ends_with(suffix));
            let n: i64 = t.dims.iter().product();
            assert_eq!(t.raw_data.len() as i64, 2 * n);
            let cast = g
                .node
                .iter()
                .find(|n| n.input.first() == Some(&t.name))
                .expect("cast");
            assert_eq!(cast.op_type, "Cast");
        }
        assert_eq!(g.initializer.len(), model.weights.len());
    }
}

#[test]
fn write_inline_and_external() {
    let model = load_model(&model_dir("xl"), &LoadOptions::default()).expect("load");
    let proto = emit(&lower(&model), &model.weights, &EmitOptions::default()).expect("emit");
    let dir = std::env::temp_dir().join(format!("onnx_emit_test_{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let inline = dir.join("inline.onnx");
    write(proto.clone(), &inline).expect("write");
    // Streamed field order differs from prost's, the message is the same.
    let back =
        ModelProto::decode(std::fs::read(&inline).expect("read").as_slice()).expect("decode");
    assert_eq!(back, proto);
    assert!(!dir.join("inline.onnx.data").exists());

    let ext = dir.join("ext.onnx");
    write_with_limit(proto.clone(), &ext, 0).expect("write external");
    let data = std::fs::read(dir.join("ext.onnx.data")).expect("data file");
    let back = ModelProto::decode(std::fs::read(&ext).expect("read").as_slice()).expect("decode");
    let orig = proto.graph.as_ref().expect("graph");
    for (t, o) in back
        .graph
        .as_ref()
        .expect("graph")
        .initializer
        .iter()
        .zip(&orig.initializer)
    {
        if o.raw_data.len() < 1024 {
            assert_eq!(t.raw_data, o.raw_data);
            continue;
        }
        assert_eq!(t.data_location, data_location::EXTERNAL);
        assert!(t.raw_data.is_empty());
        let get = |k: &str| {
            t.external_data
                .iter()
                .find(|e| e.key == k)
                .map(|e| e.value.clone())
                .expect(k)
        };
        assert_eq!(get("location"), "ext.onnx.data");
        let (off, len): (usize, usize) = (
            get("offset").parse().expect("offset"),
            get("length").parse().expect("length"),
        );
        assert_eq!(&data[off..off + len], o.raw_data.as_slice());
    }
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
