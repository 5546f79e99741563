//! Quantized ONNX files (`EmitOptions::quant`): every projection and expert weight is a
//! standard `DequantizeLinear` of an INT8 / INT4 initializer and its f32 scales (opset 21,
//! IR 10), with no f32 copy; embeddings, LayerNorms and biases stay f32; the scales' shapes
//! and the attributes are the blocked / per-axis forms the module doc names.

use std::path::PathBuf;

use prost::Message;
use switchhead_compiler::import::{LoadOptions, load_model};
use switchhead_compiler::ir::lower;
use switchhead_compiler::onnx::proto::{ModelProto, NodeProto, TensorProto, data_type};
use switchhead_compiler::onnx::{EmitOptions, OnnxQuant, emit};
use switchhead_ops::plan::QuantBits;

const INT8: i32 = 3;
const INT4: i32 = 22;

fn emit_quantized(name: &str, quant: OnnxQuant, decompose: bool, kv_cache: bool) -> ModelProto {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/models")
        .join(name);
    let model = load_model(&dir, &LoadOptions::default()).expect("load");
    let opts = EmitOptions {
        decompose,
        kv_cache,
        quant: Some(quant),
        ..Default::default()
    };
    let proto = emit(&lower(&model), &model.weights, &opts).expect("emit");
    ModelProto::decode(proto.encode_to_vec().as_slice()).expect("decode")
}

fn attr(n: &NodeProto, k: &str) -> Option<i64> {
    n.attribute.iter().find(|a| a.name == k).map(|a| a.i)
}

/// Checks one `DequantizeLinear` against its initializers; returns the weight's dims.
fn check_node(n: &NodeProto, inits: &[TensorProto], q: OnnxQuant) -> Vec<i64> {
    let w = &n.output[0];
    assert_eq!(n.input, [format!("{w}.q"), format!("{w}.scale")], "{w}");
    let find = |name: &str| inits.iter().find(|t| t.name == name).expect(name);
    let (x, s) = (find(&n.input[0]), find(&n.input[1]));
    assert!(
        inits.iter().all(|t| &t.name != w),
        "{w}: an f32 copy is left"
    );
    assert_eq!(s.data_type, data_type::FLOAT);
    let numel: i64 = x.dims.iter().product();
    let (rank, inp) = (x.dims.len(), x.dims[1]);
    let out = x.dims[if rank == 2 { 0 } else { 2 }];
    match q.bits {
        QuantBits::Int8 => {
            assert_eq!(x.data_type, INT8, "{w}");
            assert_eq!(x.raw_data.len() as i64, numel, "{w}");
            match rank {
                2 => {
                    assert_eq!((attr(n, "axis"), attr(n, "block_size")), (Some(0), None));
                    assert_eq!(s.dims, [out], "{w}");
                }
                _ => {
                    assert_eq!(
                        (attr(n, "axis"), attr(n, "block_size")),
                        (Some(1), Some(inp))
                    );
                    assert_eq!(s.dims, [x.dims[0], 1, out], "{w}");
                }
            }
        }
        QuantBits::Int4 => {
            let g = q.group as i64;
            assert_eq!(x.data_type, INT4, "{w}");
            assert_eq!(
                x.raw_data.len() as i64,
                (numel + 1) / 2,
                "{w}: two per byte"
            );
            assert_eq!((attr(n, "axis"), attr(n, "block_size")), (Some(1), Some(g)));
            let groups = (inp + g - 1) / g;
            let want = match rank {
                2 => vec![out, groups],
                _ => vec![x.dims[0], groups, out],
            };
            assert_eq!(s.dims, want, "{w}");
        }
    }
    x.dims.clone()
}

fn check_model(name: &str, m: &ModelProto, q: OnnxQuant) {
    assert_eq!(m.ir_version, 10);
    let default = m.opset_import.iter().find(|o| o.domain.is_empty());
    assert_eq!(default.map(|o| o.version), Some(21), "{name}");
    assert!(
        m.functions
            .iter()
            .all(|f| f.opset_import.iter().all(|o| o.version == 21))
    );
    let meta = m
        .metadata_props
        .iter()
        .find(|p| p.key == "switchhead.quantize");
    assert_eq!(meta.map(|p| p.value.clone()), Some(q.label()));
    let g = m.graph.as_ref().expect("graph");
    let dq: Vec<&NodeProto> = g
        .node
        .iter()
        .filter(|n| n.op_type == "DequantizeLinear")
        .collect();
    let ranks: Vec<usize> = dq
        .iter()
        .map(|n| check_node(n, &g.initializer, q).len())
        .collect();
    assert!(ranks.contains(&2), "{name}: no quantized projection");
    let quantized: Vec<&str> = dq.iter().map(|n| n.output[0].as_str()).collect();
    assert!(
        quantized.contains(&"output.weight"),
        "{name}: head not quantized {quantized:?}"
    );
    for w in &quantized {
        assert!(
            g.node.iter().any(|n| n.input.iter().any(|i| i == w)),
            "{w} is not read"
        );
    }
    // What is left in float: vectors (LayerNorm, biases) and the embedding table.
    let tokens_reader = g
        .node
        .iter()
        .find(|n| n.input.iter().any(|i| i == "tokens"));
    for t in g
        .initializer
        .iter()
        .filter(|t| t.data_type == data_type::FLOAT)
    {
        let table = tokens_reader.is_some_and(|n| n.input.contains(&t.name));
        let scale = t.name.ends_with(".scale");
        assert!(
            t.dims.len() <= 1 || table || scale,
            "{name}: f32 {} {:?}",
            t.name,
            t.dims
        );
    }
}

#[test]
fn every_projection_is_a_dequantize_linear_of_int8_or_int4() {
    let int8 = OnnxQuant {
        bits: QuantBits::Int8,
        group: 0,
    };
    let int4 = |group| OnnxQuant {
        bits: QuantBits::Int4,
        group,
    };
    for (name, q) in [
        ("rope", int8),
        ("rope", int4(32)),
        ("switchall", int4(64)),
        ("xl", int8),
    ] {
        for decompose in [false, true] {
            check_model(name, &emit_quantized(name, q, decompose, false), q);
        }
    }
    for q in [int8, int4(128)] {
        check_model("rope", &emit_quantized("rope", q, false, true), q);
    }
}

#[test]
fn unquantized_files_keep_opset_17() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/models/rope");
    let model = load_model(&dir, &LoadOptions::default()).expect("load");
    let proto = emit(&lower(&model), &model.weights, &EmitOptions::default()).expect("emit");
    assert_eq!(proto.opset_import[0].version, 17);
    let g = proto.graph.expect("graph");
    assert!(g.node.iter().all(|n| n.op_type != "DequantizeLinear"));
}
