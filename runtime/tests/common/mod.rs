//! Builders for small ONNX test models (tract's prost `pb` types) and random data.
#![allow(dead_code)]

use std::path::PathBuf;

use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use switchhead_ops::Tensor;
use tract_onnx::pb;

pub const DOMAIN: &str = "ai.switchhead";

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

pub fn random(rng: &mut ChaCha8Rng, shape: &[usize], scale: f32) -> Tensor {
    let n = shape.iter().product();
    let data = (0..n).map(|_| rng.random_range(-scale..scale)).collect();
    Tensor::new(shape.to_vec(), data).expect("shape")
}

pub fn init(name: &str, t: &Tensor) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: t.shape().iter().map(|&d| d as i64).collect(),
        data_type: pb::tensor_proto::DataType::Float as i32,
        float_data: t.data().to_vec(),
        ..Default::default()
    }
}

pub fn attr_i(name: &str, i: i64) -> pb::AttributeProto {
    use pb::attribute_proto::AttributeType;
    pb::AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

pub fn attr_f(name: &str, f: f32) -> pb::AttributeProto {
    use pb::attribute_proto::AttributeType;
    pb::AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f,
        ..Default::default()
    }
}

pub fn attr_s(name: &str, s: &str) -> pb::AttributeProto {
    use pb::attribute_proto::AttributeType;
    pb::AttributeProto {
        name: name.into(),
        r#type: AttributeType::String as i32,
        s: s.as_bytes().to_vec(),
        ..Default::default()
    }
}

pub fn node(
    op: &str,
    domain: &str,
    inputs: &[&str],
    output: &str,
    attribute: Vec<pb::AttributeProto>,
) -> pb::NodeProto {
    pb::NodeProto {
        name: format!("{op}_{output}"),
        op_type: op.into(),
        domain: domain.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

pub enum D {
    P(&'static str),
    V(i64),
}

pub fn value_info(name: &str, elem: pb::tensor_proto::DataType, dims: &[D]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                D::P(p) => Value::DimParam(p.to_string()),
                D::V(v) => Value::DimValue(*v),
            }),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A model around `body`: tokens -> Gather(embedding) -> "x"; the body writes "y"; logits = y.
/// With `xl`, a `memory.0` input `[batch, mem_len, d]` and `memory_out.0 = x` output.
pub struct ModelSpec {
    pub d: usize,
    pub embedding: Tensor,
    pub body: Vec<pb::NodeProto>,
    pub weights: Vec<pb::TensorProto>,
    pub xl: bool,
    pub switchhead_version: Option<i64>,
}

pub fn model(spec: ModelSpec) -> pb::ModelProto {
    use pb::tensor_proto::DataType;
    let d = spec.d as i64;
    let mut nodes = vec![node("Gather", "", &["embedding", "tokens"], "x", vec![])];
    let mut inputs = vec![value_info(
        "tokens",
        DataType::Int64,
        &[D::P("batch"), D::P("seq")],
    )];
    let mut outputs = vec![value_info(
        "logits",
        DataType::Float,
        &[D::P("batch"), D::P("seq"), D::V(d)],
    )];
    if spec.xl {
        inputs.push(value_info(
            "memory.0",
            DataType::Float,
            &[D::P("batch"), D::P("mem_len"), D::V(d)],
        ));
        outputs.push(value_info(
            "memory_out.0",
            DataType::Float,
            &[D::P("batch"), D::P("seq"), D::V(d)],
        ));
        let mut concat = node(
            "Concat",
            "",
            &["memory.0", "x"],
            "xkv",
            vec![attr_i("axis", 1)],
        );
        concat.name = "concat_memory".into();
        nodes.push(concat);
        nodes.push(node("Identity", "", &["x"], "memory_out.0", vec![]));
    }
    nodes.extend(spec.body);
    nodes.push(node("Identity", "", &["y"], "logits", vec![]));
    let mut initializer = vec![init("embedding", &spec.embedding)];
    initializer.extend(spec.weights);
    let mut opset_import = vec![pb::OperatorSetIdProto {
        domain: "".into(),
        version: 17,
    }];
    if let Some(v) = spec.switchhead_version {
        opset_import.push(pb::OperatorSetIdProto {
            domain: DOMAIN.into(),
            version: v,
        });
    }
    pb::ModelProto {
        ir_version: 8,
        producer_name: "runtime-tests".into(),
        opset_import,
        graph: Some(pb::GraphProto {
            name: "test".into(),
            node: nodes,
            initializer,
            input: inputs,
            output: outputs,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Writes `model` to a fresh file in the temp dir and returns its path.
pub fn write(model: &pb::ModelProto, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchhead-runtime-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("{tag}.onnx"));
    std::fs::write(&path, model.encode_to_vec()).expect("write model");
    path
}

/// `|a - b| <= tol * max|b|` element-wise.
pub fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "lengths");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * scale,
            "element {i}: got {g}, want {w} (scale {scale})"
        );
    }
}
