//! IR graph -> ONNX model, and writing it (inline or with external data).
//!
//! Interface: input `tokens` int64 `[batch, seq]`, output `logits` f32 `[batch, seq, vocab]`;
//! XL models also take `memory.{i}` f32 `[batch, mem_len, D]` (mem_len may be 0) and return
//! `memory_out.{i}` f32 `[batch, seq, D]`. Values are named after IR nodes
//! (`{node}/out`), decomposition temporaries `{node}/{op}_{n}`; weights keep their canonical
//! names. Everything is emitted in IR order, so the bytes are identical across runs.
//!
//! KV cache ([`EmitOptions::kv_cache`], RoPE models only; ONNX Runtime GenAI's names): per
//! layer i (in IR order) the model also takes `past_key_values.{i}.key` and
//! `past_key_values.{i}.value` f32 `[batch, n_heads, past_sequence_length, d_head]`
//! (past_sequence_length may be 0) and returns, after `logits`, `present.{i}.key` and
//! `present.{i}.value` f32 `[batch, n_heads, total_sequence_length, d_head]`, the past
//! concatenated with the current tokens' entries on axis 2. Keys are cached scaled by
//! dh^-0.25 and rotated at their absolute positions, values after the expert mixture;
//! queries and new keys take positions `past_sequence_length + 0 .. seq - 1`, and query r
//! sees the cached keys and current keys c <= r.
//!
//! Every model carries `metadata_props` (decimal strings): `switchhead.n_layers`,
//! `switchhead.d_model`, `switchhead.n_heads`, `switchhead.d_head`, `switchhead.vocab_size`,
//! `switchhead.pos_encoding` (`rope` | `xl`), `switchhead.kv_cache` (`0` | `1`),
//! `switchhead.chunk_size` (when [`EmitOptions::chunk_size`] is given) and
//! `switchhead.format_version` (`1`); and `switchhead.plan_graph`, the graph a native plan of
//! the same model holds (`switchhead_ops::plan`'s JSON, row-major weights of the
//! initializers' storage type, offsets as `layout_weights` assigns them), which the device
//! executors bind to the initializers by name to run the ONNX file as that plan. It is left
//! out of graphs a plan cannot hold (no embedding table).
//!
//! # `ai.switchhead::MoEAttention` (domain version 1)
//!
//! Inputs `xq` `[B, T, D]`, `xkv` `[B, Tk, D]`, `q`, `k` `[H*dh, D]`, `v`, `o` (ExpertsVO:
//! `[H*E, D, dh]`, `[H*E, dh, D]`; Gated/Dense: `[H*dh, D]`, `[D, H*dh]`), then `sel_v`
//! (ExpertsVO), `sel_o` (ExpertsVO, Gated) `[H*E, D]`, `pos_to_pk` (XL) `[H*dh, D]`; output
//! `y` `[B, T, D]`. Attributes `heads`, `experts`, `k`, `d_head`, `pos`, `rotate_fraction`,
//! `rope_base`, `causal`, `variant`. With attribute `kv_cache = 1` (RoPE only) it takes two
//! more inputs after those, `past_key` and `past_value` `[B, H, P, dh]`, and returns two more
//! outputs after `y`, `present_key` and `present_value` `[B, H, P + T, dh]` (xkv is xq).
//! The model-local function of the same name is the standard-op decomposition.

use std::path::Path;

use switchhead_ops::op::{AttentionVariant, Merge, MoeAttentionAttrs, Op, PosEncoding};

use super::builder::{Builder, attr_f, attr_i, attr_s};
use super::decompose::{ExpertForm, OpContext, decompose, decompose_attention_kv};
use super::proto::{
    AttributeProto, FunctionProto, GraphProto, ModelProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, data_type,
    tensor_shape_proto, type_proto,
};
use super::quantize::{
    OnnxQuant, QUANT_IR_VERSION, QUANT_OPSET, quantized_initializers, quantized_weights,
};
use crate::error::ImportError;
use crate::ir::{DType, Dim, Graph, ValueDef, ValueId};
use crate::model::Weights;
use crate::tensor_io::IoError;

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
    /// KV-cache interface (RoPE models only; see the module doc).
    pub kv_cache: bool,
    /// Training context / chunk length, written as `switchhead.chunk_size` metadata if known.
    pub chunk_size: Option<usize>,
    /// Formulation of the routed experts in the standard-op decomposition (the `--decompose`
    /// graph and the custom ops' function bodies).
    pub experts: ExpertForm,
    /// Weight-only quantization of the projection and expert weights ([`super::quantize`]):
    /// `DequantizeLinear` nodes, default-domain opset 21, IR version 10. None: float weights.
    pub quant: Option<OnnxQuant>,
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
    /// A KV cache was asked of a Transformer-XL model.
    #[error(
        "--kv-cache needs a RoPE model: Transformer-XL models carry their state in the memory.{{i}} inputs instead"
    )]
    KvCacheXl,
}

/// Emits `graph` with `weights` as an ONNX model.
pub fn emit(graph: &Graph, weights: &Weights, opts: &EmitOptions) -> Result<ModelProto, EmitError> {
    let weights = &crate::ir::materialize(graph, weights)?;
    let mut nodes = Vec::new();
    let initializer = initializers(graph, weights, opts, &mut nodes)?;
    let (opset_version, ir_version) = match opts.quant {
        Some(_) => (QUANT_OPSET, QUANT_IR_VERSION),
        None => (OPSET, IR_VERSION),
    };
    let mut functions: Vec<(Vec<AttributeProto>, FunctionProto)> = Vec::new();
    let (mut kv_inputs, mut kv_outputs) = (Vec::new(), Vec::new());
    if opts.kv_cache && attention_nodes(graph).any(|a| a.pos == PosEncoding::Xl) {
        return Err(EmitError::KvCacheXl);
    }
    for (_, node) in graph.live_nodes() {
        let inputs: Vec<String> = node.inputs.iter().map(|&v| value_name(graph, v)).collect();
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let out = value_name(graph, node.outputs[0]);
        let ctx = context(graph, &node.op, &node.inputs, opts.experts);
        let mut b = Builder::new(format!("{}/", node.name));
        if let (true, Op::MoEAttention(a)) = (opts.kv_cache, &node.op) {
            let layer = kv_inputs.len() / 2;
            let names = KvNames::new(layer);
            let mut inputs = inputs;
            inputs.extend([names.past_key.as_str(), names.past_value.as_str()]);
            let outs = vec![out, names.present_key.clone(), names.present_value.clone()];
            match custom_attrs(&node.op) {
                Some(mut attrs) if !opts.decompose => {
                    attrs.push(attr_i("kv_cache", 1));
                    add_function(&mut functions, &node.op, &attrs, ctx, true, opset_version)?;
                    b.op_to(node.op.name(), DOMAIN, &inputs, attrs, outs);
                }
                _ => {
                    let (y, k, v) = decompose_attention_kv(&mut b, &node.op, &inputs, ctx)?;
                    for (from, to) in [y, k, v].iter().zip(outs) {
                        b.op_to("Identity", "", &[from], vec![], vec![to]);
                    }
                }
            }
            nodes.extend(b.nodes);
            let cache = |len: &str| {
                let (h, dh) = (Dim::Known(a.heads), Dim::Known(a.d_head));
                vec![Dim::Sym("B".into()), h, Dim::Sym(len.into()), dh]
            };
            let (past, total) = (
                cache("past_sequence_length"),
                cache("total_sequence_length"),
            );
            kv_inputs.push(value_info(&names.past_key, DType::F32, &past));
            kv_inputs.push(value_info(&names.past_value, DType::F32, &past));
            kv_outputs.push(value_info(&names.present_key, DType::F32, &total));
            kv_outputs.push(value_info(&names.present_value, DType::F32, &total));
            continue;
        }
        match custom_attrs(&node.op) {
            Some(attrs) if !opts.decompose => {
                add_function(&mut functions, &node.op, &attrs, ctx, false, opset_version)?;
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
    outputs.extend(kv_outputs);
    let mut inputs: Vec<_> = graph.inputs.iter().map(|&v| input_info(graph, v)).collect();
    inputs.extend(kv_inputs);
    let mut metadata_props = metadata(graph, opts);
    metadata_props.extend(plan_graph_entry(graph, weights, opts));
    let graph = GraphProto {
        node: nodes,
        name: "switchhead".into(),
        initializer,
        input: inputs,
        output: outputs,
        ..Default::default()
    };
    let mut opset_import = vec![opset("", opset_version)];
    if !functions.is_empty() {
        opset_import.push(opset(DOMAIN, 1));
    }
    Ok(ModelProto {
        ir_version,
        opset_import,
        producer_name: "switchhead".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        functions: functions.into_iter().map(|(_, f)| f).collect(),
        metadata_props,
        ..Default::default()
    })
}

/// GenAI-style cache value names of layer `i`.
struct KvNames {
    past_key: String,
    past_value: String,
    present_key: String,
    present_value: String,
}

impl KvNames {
    fn new(i: usize) -> Self {
        KvNames {
            past_key: format!("past_key_values.{i}.key"),
            past_value: format!("past_key_values.{i}.value"),
            present_key: format!("present.{i}.key"),
            present_value: format!("present.{i}.value"),
        }
    }
}

/// The attributes of every live `MoEAttention`, in IR (layer) order.
fn attention_nodes(graph: &Graph) -> impl Iterator<Item = &MoeAttentionAttrs> {
    graph.live_nodes().filter_map(|(_, n)| match &n.op {
        Op::MoEAttention(a) => Some(a),
        _ => None,
    })
}

/// The `switchhead.*` metadata (see the module doc); facts the graph does not hold are left
/// out.
fn metadata(graph: &Graph, opts: &EmitOptions) -> Vec<StringStringEntryProto> {
    let known = |v: ValueId, axis: usize| match graph.value(v).fact.as_ref()?.shape.get(axis) {
        Some(Dim::Known(d)) => Some(*d),
        _ => None,
    };
    let table = graph.live_nodes().find_map(|(_, n)| match n.op {
        Op::Embedding => n.inputs.get(1).copied(),
        _ => None,
    });
    let first = attention_nodes(graph).next();
    let pos = first.map(|a| match a.pos {
        PosEncoding::Rope { .. } => "rope",
        PosEncoding::Xl => "xl",
    });
    let entries: [(&str, Option<String>); 10] = [
        ("n_layers", Some(attention_nodes(graph).count().to_string())),
        (
            "d_model",
            table.and_then(|t| known(t, 1)).map(|d| d.to_string()),
        ),
        ("n_heads", first.map(|a| a.heads.to_string())),
        ("d_head", first.map(|a| a.d_head.to_string())),
        (
            "vocab_size",
            table.and_then(|t| known(t, 0)).map(|d| d.to_string()),
        ),
        ("pos_encoding", pos.map(String::from)),
        ("kv_cache", Some(u8::from(opts.kv_cache).to_string())),
        ("chunk_size", opts.chunk_size.map(|c| c.to_string())),
        ("format_version", Some("1".into())),
        ("quantize", opts.quant.map(|q| q.label())),
    ];
    entries
        .into_iter()
        .filter_map(|(k, v)| {
            v.map(|value| StringStringEntryProto {
                key: format!("switchhead.{k}"),
                value,
            })
        })
        .collect()
}

/// `switchhead.plan_graph` (see the module doc), or nothing for a graph a plan cannot hold.
fn plan_graph_entry(
    graph: &Graph,
    weights: &Weights,
    opts: &EmitOptions,
) -> Option<StringStringEntryProto> {
    let plan_opts = crate::plan::PlanOptions {
        dtype: opts.dtype,
        chunk_size: opts.chunk_size,
        panels: false,
        ..Default::default()
    };
    let plan = crate::plan::plan_graph(graph, weights, &plan_opts).ok()?;
    let value = String::from_utf8(plan.to_json()).ok()?;
    Some(StringStringEntryProto {
        key: PLAN_GRAPH_KEY.into(),
        value,
    })
}

/// The metadata key of the embedded plan graph.
pub const PLAN_GRAPH_KEY: &str = "switchhead.plan_graph";

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

/// D from the op's first weight (`[.., D]`) when it is a known shape, and the expert form.
fn context(graph: &Graph, op: &Op, inputs: &[ValueId], experts: ExpertForm) -> OpContext {
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
    OpContext { d_model, experts }
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
            .map(|mut attrs| {
                match a.merged {
                    Merge::None => {}
                    Merge::All => attrs.push(attr_i("merged_projections", 1)),
                    Merge::Sides => attrs.push(attr_i("merged_projections", 2)),
                }
                attrs
            })
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
        Op::MoEAttention(a) if a.merged != Merge::None => {
            let mut n = match a.merged {
                Merge::All => vec!["xq", "xkv", "qkr", "v", "o"],
                _ => vec!["xq", "xkv", "qo", "kv", "v", "o"],
            };
            if a.pos == PosEncoding::Xl {
                n.push("pos_to_pk");
            }
            n
        }
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

/// Adds the function for `op` unless one with the same attributes exists; `kv` selects the
/// KV-cache signature (two more inputs and outputs, see the module doc).
fn add_function(
    functions: &mut Vec<(Vec<AttributeProto>, FunctionProto)>,
    op: &Op,
    attrs: &[AttributeProto],
    ctx: OpContext,
    kv: bool,
    opset_version: i64,
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
    let mut input = formal_inputs(op);
    let mut output = vec!["y".to_string()];
    let mut b = Builder::new("");
    if kv {
        input.extend(["past_key".into(), "past_value".into()]);
        output.extend(["present_key".into(), "present_value".into()]);
        let refs: Vec<&str> = input.iter().map(String::as_str).collect();
        let (y, k, v) = decompose_attention_kv(&mut b, op, &refs, ctx)?;
        for (from, to) in [y, k, v].iter().zip(&output) {
            b.op_to("Identity", "", &[from], vec![], vec![to.clone()]);
        }
    } else {
        let refs: Vec<&str> = input.iter().map(String::as_str).collect();
        let y = decompose(&mut b, op, &refs, ctx)?;
        b.op_to("Identity", "", &[&y], vec![], vec!["y".into()]);
    }
    let f = FunctionProto {
        name: op.name().into(),
        domain: DOMAIN.into(),
        input,
        output,
        attribute: attrs.iter().map(|a| a.name.clone()).collect(),
        node: b.nodes,
        doc_string: format!("Standard-op decomposition of {}::{}", DOMAIN, op.name()),
        opset_import: vec![opset("", opset_version)],
        ..Default::default()
    };
    functions.push((attrs.to_vec(), f));
    Ok(())
}

/// Initializers for every weight value, in value order; f16/bf16 ones get a `Cast` node and
/// quantized ones a `DequantizeLinear` node (appended to `nodes`) whose output carries the
/// weight's name.
fn initializers(
    graph: &Graph,
    weights: &Weights,
    opts: &EmitOptions,
    nodes: &mut Vec<super::proto::NodeProto>,
) -> Result<Vec<TensorProto>, EmitError> {
    let quantized = match opts.quant {
        Some(_) => quantized_weights(graph, weights),
        None => Default::default(),
    };
    let mut out = Vec::new();
    for (i, v) in graph.values.iter().enumerate() {
        let ValueDef::Weight(name) = &v.def else {
            continue;
        };
        let t = weights.tensor(name)?;
        if let (Some(q), true) = (opts.quant, quantized.contains(&ValueId(i as u32))) {
            let (inits, node) = quantized_initializers(name, t.shape(), t.data(), q)?;
            nodes.push(node);
            out.extend(inits);
            continue;
        }
        let dims = t.shape().iter().map(|&d| d as i64).collect();
        let (suffix, data_type, raw) = encode(t.data(), opts.dtype);
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
pub fn write(model: ModelProto, path: &Path) -> Result<(), EmitError> {
    write_with_limit(model, path, EXTERNAL_DATA_LIMIT)
}

/// Writes `model` without building its encoded bytes in memory ([`super::stream`]); when its
/// initializers hold more than `limit` bytes, every initializer of at least 1 KiB goes to
/// `<file name>.data` beside it (ONNX external data: location, offset, length; offsets 64-byte
/// aligned), which is written first, also atomically.
pub fn write_with_limit(model: ModelProto, path: &Path, limit: u64) -> Result<(), EmitError> {
    Ok(super::stream::write_model(model, path, limit)?)
}
