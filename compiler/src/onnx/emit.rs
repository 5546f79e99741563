//! IR graph -> ONNX model, and writing it (inline or with external data).
//!
//! Interface: input `tokens` int64 `[batch, seq]`, output `logits` f32 `[batch, seq, vocab]`;
//! XL models also take `memory.{i}` f32 `[batch, mem_len, D]` (mem_len may be 0) and return
//! `memory_out.{i}` f32 `[batch, seq, D]`. Values are named after IR nodes
//! (`{node}/out`), decomposition temporaries `{node}/{op}_{n}`; weights keep their canonical
//! names. Everything is emitted in IR order, so the bytes are identical across runs.

use std::path::Path;

use switchhead_ops::op::{AttentionVariant, Op, PosEncoding};

use super::builder::{Builder, attr_f, attr_i, attr_s};
use super::decompose::{OpContext, decompose};
use super::proto::{
    AttributeProto, FunctionProto, GraphProto, ModelProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
    data_location, data_type, tensor_shape_proto, type_proto,
};
use crate::error::ImportError;
use crate::ir::{DType, Dim, Graph, ValueDef, ValueId};
use crate::model::Weights;
use crate::tensor_io::{IoError, write_atomic};

/// Domain of our custom ops.
pub const DOMAIN: &str = "ai.switchhead";
/// Default-domain opset.
pub const OPSET: i64 = 17;
/// ONNX IR version written.
pub const IR_VERSION: i64 = 8;
/// Initializer bytes above which [`write`] moves big initializers to external data
/// (protobuf messages are limited to 2 GiB; this leaves room for the rest of the model).
pub const EXTERNAL_DATA_LIMIT: u64 = (2 << 30) - (64 << 20);

/// Storage type of the initializers (compute is always f32: f16/bf16 weights are `Cast`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightDType {
    #[default]
    F32,
    F16,
    BF16,
}

/// How to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EmitOptions {
    /// Standard ops only (no `ai.switchhead` nodes, no functions).
    pub decompose: bool,
    /// Initializer storage type.
    pub dtype: WeightDType,
}

/// Why a model could not be emitted or written.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// A weight could not be read.
    #[error("reading weights: {0}")]
    Weight(#[from] ImportError),
    /// Writing failed.
    #[error("writing ONNX: {0}")]
    Io(#[from] IoError),
    /// The graph uses something the emitter cannot express.
    #[error("cannot emit {op}: {reason}")]
    Unsupported { op: String, reason: String },
}

/// Emits `graph` with `weights` as an ONNX model.
pub fn emit(graph: &Graph, weights: &Weights, opts: &EmitOptions) -> Result<ModelProto, EmitError> {
    let mut nodes = Vec::new();
    let initializer = initializers(graph, weights, opts.dtype, &mut nodes)?;
    let mut functions: Vec<(Vec<AttributeProto>, FunctionProto)> = Vec::new();
    for (_, node) in graph.live_nodes() {
        let inputs: Vec<String> = node.inputs.iter().map(|&v| value_name(graph, v)).collect();
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let out = value_name(graph, node.outputs[0]);
        let ctx = context(graph, &node.op, &node.inputs);
        let mut b = Builder::new(format!("{}/", node.name));
        match custom_attrs(&node.op) {
            Some(attrs) if !opts.decompose => {
                add_function(&mut functions, &node.op, &attrs, ctx)?;
                b.op_to(node.op.name(), DOMAIN, &inputs, attrs, vec![out]);
            }
            _ => {
                let y = decompose(&mut b, &node.op, &inputs, ctx)?;
                b.op_to("Identity", "", &[&y], vec![], vec![out]);
            }
        }
        nodes.extend(b.nodes);
    }
    let mut outputs = Vec::new();
    for (name, v) in &graph.outputs {
        let mut b = Builder::new(format!("{name}/"));
        b.op_to(
            "Identity",
            "",
            &[&value_name(graph, *v)],
            vec![],
            vec![name.clone()],
        );
        nodes.extend(b.nodes);
        outputs.push(value_info(name, DType::F32, &shape_of(graph, *v)));
    }
    let inputs = graph.inputs.iter().map(|&v| input_info(graph, v)).collect();
    let graph = GraphProto {
        node: nodes,
        name: "switchhead".into(),
        initializer,
        input: inputs,
        output: outputs,
        ..Default::default()
    };
    let mut opset_import = vec![opset("", OPSET)];
    if !functions.is_empty() {
        opset_import.push(opset(DOMAIN, 1));
    }
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import,
        producer_name: "switchhead".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        functions: functions.into_iter().map(|(_, f)| f).collect(),
        ..Default::default()
    })
}

fn opset(domain: &str, version: i64) -> OperatorSetIdProto {
    OperatorSetIdProto {
        domain: domain.into(),
        version,
    }
}

/// The ONNX name of IR value `v`.
fn value_name(graph: &Graph, v: ValueId) -> String {
    match &graph.value(v).def {
        ValueDef::Input(n) | ValueDef::Weight(n) => n.clone(),
        ValueDef::Node(id, slot) => {
            let node = graph.nodes[id.0 as usize]
                .as_ref()
                .map_or("node", |n| n.name.as_str());
            match slot {
                0 => format!("{node}/out"),
                s => format!("{node}/out{s}"),
            }
        }
    }
}

/// D from the op's first weight (`[.., D]`) when it is a known shape.
fn context(graph: &Graph, op: &Op, inputs: &[ValueId]) -> OpContext {
    let weight = match op {
        Op::MoEAttention(_) => inputs.get(2),
        _ => None,
    };
    let d_model = weight
        .and_then(|&w| graph.value(w).fact.as_ref())
        .and_then(|f| match f.shape.last() {
            Some(Dim::Known(d)) => Some(*d),
            _ => None,
        })
        .unwrap_or(0);
    OpContext { d_model }
}

/// The `ai.switchhead` attributes of a custom-domain op, or None for ops always decomposed.
fn custom_attrs(op: &Op) -> Option<Vec<AttributeProto>> {
    match op {
        Op::MoEAttention(a) => {
            let (pos, fraction, base) = match a.pos {
                PosEncoding::Rope {
                    rotate_fraction,
                    base,
                } => ("rope", rotate_fraction, base),
                PosEncoding::Xl => ("xl", 0.0, 0.0),
            };
            let variant = match a.variant {
                AttentionVariant::ExpertsVO => "experts_vo",
                AttentionVariant::Gated => "gated",
                AttentionVariant::Dense => "dense",
            };
            Some(vec![
                attr_i("heads", a.heads as i64),
                attr_i("experts", a.experts as i64),
                attr_i("k", a.k as i64),
                attr_i("d_head", a.d_head as i64),
                attr_s("pos", pos),
                attr_f("rotate_fraction", fraction as f32),
                attr_f("rope_base", base as f32),
                attr_i("causal", i64::from(a.causal)),
                attr_s("variant", variant),
            ])
        }
        Op::SigmaMoe(a) => Some(vec![
            attr_i("experts", a.experts as i64),
            attr_i("expert_size", a.expert_size as i64),
            attr_i("k", a.k as i64),
        ]),
        _ => None,
    }
}

/// Formal input names of the custom ops' functions.
fn formal_inputs(op: &Op) -> Vec<String> {
    let names: Vec<&str> = match op {
        Op::MoEAttention(a) => {
            let mut n = vec!["xq", "xkv", "q", "k", "v", "o"];
            n.extend(match a.variant {
                AttentionVariant::ExpertsVO => &["sel_v", "sel_o"][..],
                AttentionVariant::Gated => &["sel_o"][..],
                AttentionVariant::Dense => &[][..],
            });
            if a.pos == PosEncoding::Xl {
                n.push("pos_to_pk");
            }
            n
        }
        _ => vec!["x", "router", "keys", "values"],
    };
    names.into_iter().map(String::from).collect()
}

/// Adds the function for `op` unless one with the same attributes exists.
fn add_function(
    functions: &mut Vec<(Vec<AttributeProto>, FunctionProto)>,
    op: &Op,
    attrs: &[AttributeProto],
    ctx: OpContext,
) -> Result<(), EmitError> {
    if let Some((existing, _)) = functions.iter().find(|(_, f)| f.name == op.name()) {
        if existing.as_slice() == attrs {
            return Ok(());
        }
        let reason =
            "layers with different attributes in one model (one function per op name)".into();
        return Err(EmitError::Unsupported {
            op: op.name().into(),
            reason,
        });
    }
    let input = formal_inputs(op);
    let refs: Vec<&str> = input.iter().map(String::as_str).collect();
    let mut b = Builder::new("");
    let y = decompose(&mut b, op, &refs, ctx)?;
    b.op_to("Identity", "", &[&y], vec![], vec!["y".into()]);
    let f = FunctionProto {
        name: op.name().into(),
        domain: DOMAIN.into(),
        input,
        output: vec!["y".into()],
        attribute: attrs.iter().map(|a| a.name.clone()).collect(),
        node: b.nodes,
        doc_string: format!("Standard-op decomposition of {}::{}", DOMAIN, op.name()),
        opset_import: vec![opset("", OPSET)],
        ..Default::default()
    };
    functions.push((attrs.to_vec(), f));
    Ok(())
}

/// Initializers for every weight value, in value order; f16/bf16 ones get a `Cast` node
/// (appended to `nodes`) whose output carries the weight's name.
fn initializers(
    graph: &Graph,
    weights: &Weights,
    dtype: WeightDType,
    nodes: &mut Vec<super::proto::NodeProto>,
) -> Result<Vec<TensorProto>, EmitError> {
    let mut out = Vec::new();
    for v in &graph.values {
        let ValueDef::Weight(name) = &v.def else {
            continue;
        };
        let t = weights.tensor(name)?;
        let dims = t.shape().iter().map(|&d| d as i64).collect();
        let (suffix, data_type, raw) = encode(t.data(), dtype);
        let stored = match suffix {
            "" => name.clone(),
            s => format!("{name}.{s}"),
        };
        if !suffix.is_empty() {
            let mut b = Builder::new(format!("{name}/"));
            b.op_to(
                "Cast",
                "",
                &[&stored],
                vec![attr_i("to", i64::from(data_type::FLOAT))],
                vec![name.clone()],
            );
            nodes.extend(b.nodes);
        }
        out.push(TensorProto {
            dims,
            data_type,
            name: stored,
            raw_data: raw,
            ..Default::default()
        });
    }
    Ok(out)
}

/// Little-endian bytes of `data` in `dtype`, with the name suffix and ONNX type.
fn encode(data: &[f32], dtype: WeightDType) -> (&'static str, i32, Vec<u8>) {
    match dtype {
        WeightDType::F32 => (
            "",
            data_type::FLOAT,
            data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
        WeightDType::F16 => (
            "f16",
            data_type::FLOAT16,
            data.iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
        ),
        WeightDType::BF16 => (
            "bf16",
            data_type::BFLOAT16,
            data.iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect(),
        ),
    }
}

/// Best-known shape of `v` (IR facts where present, else derived from the producer).
fn shape_of(graph: &Graph, v: ValueId) -> Vec<Dim> {
    let value = graph.value(v);
    if let Some(f) = &value.fact {
        return f.shape.clone();
    }
    let ValueDef::Node(id, _) = value.def else {
        return Vec::new();
    };
    let Some(node) = graph.nodes[id.0 as usize].as_ref() else {
        return Vec::new();
    };
    let last_of = |w: ValueId, axis: usize| {
        graph
            .value(w)
            .fact
            .as_ref()
            .and_then(|f| f.shape.get(axis).cloned())
    };
    match &node.op {
        Op::Embedding => {
            let mut s = shape_of(graph, node.inputs[0]);
            s.extend(last_of(node.inputs[1], 1));
            s
        }
        Op::Linear { .. } => {
            let mut s = shape_of(graph, node.inputs[0]);
            if let (Some(d), Some(_)) = (last_of(node.inputs[1], 0), s.pop()) {
                s.push(d);
            }
            s
        }
        Op::ConcatSeq => {
            let mut s = shape_of(graph, node.inputs[1]);
            if s.len() > 1 {
                s[1] = Dim::Sym("kv_len".into());
            }
            s
        }
        _ => shape_of(graph, node.inputs[0]),
    }
}

fn input_info(graph: &Graph, v: ValueId) -> ValueInfoProto {
    let value = graph.value(v);
    let dtype = value.fact.as_ref().map_or(DType::F32, |f| f.dtype);
    value_info(&value_name(graph, v), dtype, &shape_of(graph, v))
}

fn value_info(name: &str, dtype: DType, shape: &[Dim]) -> ValueInfoProto {
    let elem_type = match dtype {
        DType::I64 => data_type::INT64,
        DType::F16 => data_type::FLOAT16,
        DType::BF16 => data_type::BFLOAT16,
        DType::F32 => data_type::FLOAT,
    };
    // An empty shape means "unknown" here (no interface value is a scalar): leave it out.
    let dim: Vec<_> = shape.iter().map(dimension).collect();
    let shape = (!dim.is_empty()).then_some(TensorShapeProto { dim });
    let tensor = type_proto::Tensor { elem_type, shape };
    let r#type = Some(TypeProto {
        value: Some(type_proto::Value::TensorType(tensor)),
        denotation: String::new(),
    });
    ValueInfoProto {
        name: name.into(),
        r#type,
        doc_string: String::new(),
    }
}

/// IR symbols map to the interface's dim_params: B -> batch, T -> seq, M -> mem_len.
fn dimension(d: &Dim) -> tensor_shape_proto::Dimension {
    use tensor_shape_proto::dimension::Value;
    let value = match d {
        Dim::Known(n) => Value::DimValue(*n as i64),
        Dim::Sym(s) => Value::DimParam(
            match s.as_str() {
                "B" => "batch",
                "T" => "seq",
                "M" => "mem_len",
                other => other,
            }
            .into(),
        ),
    };
    tensor_shape_proto::Dimension {
        value: Some(value),
        denotation: String::new(),
    }
}

/// Encodes and writes `model` to `path` atomically; see [`write_with_limit`].
pub fn write(model: &ModelProto, path: &Path) -> Result<(), EmitError> {
    write_with_limit(model, path, EXTERNAL_DATA_LIMIT)
}

/// Writes `model`; when its initializers hold more than `limit` bytes, every initializer of
/// at least 1 KiB goes to `<file name>.data` beside it (ONNX external data: location,
/// offset, length; offsets 64-byte aligned), which is written first, also atomically.
pub fn write_with_limit(model: &ModelProto, path: &Path, limit: u64) -> Result<(), EmitError> {
    use prost::Message;
    let total: u64 = model
        .graph
        .iter()
        .flat_map(|g| &g.initializer)
        .map(|t| t.raw_data.len() as u64)
        .sum();
    if total <= limit {
        return Ok(write_atomic(path, &model.encode_to_vec())?);
    }
    let file = path
        .file_name()
        .map(|n| format!("{}.data", n.to_string_lossy()))
        .unwrap_or_else(|| "model.onnx.data".into());
    let mut model = model.clone();
    let mut data = Vec::new();
    for t in model.graph.iter_mut().flat_map(|g| &mut g.initializer) {
        if t.raw_data.len() < 1024 {
            continue;
        }
        data.resize(data.len().next_multiple_of(64), 0);
        let entry = |k: &str, v: String| StringStringEntryProto {
            key: k.into(),
            value: v,
        };
        t.external_data = vec![
            entry("location", file.clone()),
            entry("offset", data.len().to_string()),
            entry("length", t.raw_data.len().to_string()),
        ];
        t.data_location = data_location::EXTERNAL;
        data.append(&mut t.raw_data);
    }
    write_atomic(&path.with_file_name(&file), &data)?;
    Ok(write_atomic(path, &model.encode_to_vec())?)
}
