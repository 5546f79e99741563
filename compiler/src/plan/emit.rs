//! IR graph -> plan graph (values renumbered: inputs, then weights, then node outputs in
//! execution order) and writing the file atomically, weights streamed one at a time.

use std::collections::HashMap;
use std::path::Path;

use switchhead_ops::op::Op;
use switchhead_ops::plan::{
    PlanDType, PlanGraph, PlanInput, PlanLayout, PlanMeta, PlanNode, PlanOp, PlanOutput,
    PlanWeight, QuantBits, layout_weights, packed_layout, to_expert_panels, to_panels, write_plan,
};

use super::PlanQuant;
use super::quant::{choose_quantized, quantized_bytes};

use crate::error::ImportError;
use crate::ir::{DType, Graph, ValueDef, ValueId};
use crate::model::Weights;
use crate::onnx::WeightDType;
use crate::tensor_io::{IoError, write_atomic_with};

/// How to emit a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlanOptions {
    /// Storage type of the weights (compute stays f32; f32 weights are used in place).
    pub dtype: WeightDType,
    /// Training context / chunk length, recorded in the plan's meta if known.
    pub chunk_size: Option<usize>,
    /// Store projection weights in the `panels` layout and expert stacks in `expert_panels`,
    /// which the CPU kernels stream in place (the slots `packed_layout` names: Linear and
    /// dense-FFN weights, attention q, k and pos_to_pk; the attention's V/O experts and
    /// σ-MoE's keys/values); off keeps every weight row-major.
    pub panels: bool,
    /// Weight-only quantization of the projection and expert weights (module `quant`; the
    /// others stay f32, all row-major); requires `dtype` f32.
    pub quantize: Option<PlanQuant>,
}

/// Why a plan could not be emitted or written.
#[derive(Debug, thiserror::Error)]
pub enum PlanEmitError {
    /// A weight could not be read.
    #[error("reading weights: {0}")]
    Weight(#[from] ImportError),
    /// Writing failed.
    #[error("writing plan: {0}")]
    Io(#[from] IoError),
    /// The graph is not one a plan can hold.
    #[error("cannot emit a plan: {0}")]
    Graph(String),
    /// The options contradict each other.
    #[error("plan options: {0}")]
    Options(String),
}

/// The plan graph of `graph` (weight offsets laid out).
pub fn plan_graph(
    graph: &Graph,
    weights: &Weights,
    opts: &PlanOptions,
) -> Result<PlanGraph, PlanEmitError> {
    let mut ids: HashMap<ValueId, u32> = HashMap::new();
    let next = |v: ValueId, ids: &mut HashMap<ValueId, u32>| {
        let id = ids.len() as u32;
        *ids.entry(v).or_insert(id)
    };
    let mut inputs = Vec::new();
    for &v in &graph.inputs {
        let ValueDef::Input(name) = &graph.value(v).def else {
            return Err(PlanEmitError::Graph(format!("input {v:?} is not an input")));
        };
        let dtype = match graph.value(v).fact.as_ref().map(|f| f.dtype) {
            Some(DType::I64) => PlanDType::I64,
            _ => PlanDType::F32,
        };
        let value = next(v, &mut ids);
        inputs.push(PlanInput {
            name: name.clone(),
            value,
            dtype,
        });
    }
    check_quant(opts)?;
    let weights = &crate::ir::materialize(graph, weights)?;
    let mut plan_weights = plan_weights(graph, weights, opts.dtype, &mut ids)?;
    if let Some(q) = opts.quantize {
        choose_quantized(graph, &ids, &mut plan_weights, q);
    }
    if opts.panels {
        choose_panels(graph, &ids, &mut plan_weights);
    }
    layout_weights(&mut plan_weights);
    let mut nodes = Vec::new();
    for (_, node) in graph.live_nodes() {
        let map = |v: &ValueId| {
            ids.get(v).copied().ok_or_else(|| {
                PlanEmitError::Graph(format!("node {} reads an undefined value", node.name))
            })
        };
        let node_inputs = node.inputs.iter().map(map).collect::<Result<_, _>>()?;
        let outputs = node.outputs.iter().map(|&v| next(v, &mut ids)).collect();
        nodes.push(PlanNode {
            name: node.name.clone(),
            op: PlanOp::from(&node.op),
            inputs: node_inputs,
            outputs,
        });
    }
    let outputs = graph
        .outputs
        .iter()
        .map(|(name, v)| {
            let value = ids
                .get(v)
                .copied()
                .ok_or_else(|| PlanEmitError::Graph(format!("output {name} is undefined")))?;
            Ok(PlanOutput {
                name: name.clone(),
                value,
            })
        })
        .collect::<Result<_, PlanEmitError>>()?;
    let meta = meta(graph, &plan_weights, opts.chunk_size)?;
    Ok(PlanGraph {
        producer: format!("switchhead {}", env!("CARGO_PKG_VERSION")),
        n_values: ids.len() as u32,
        inputs,
        outputs,
        weights: plan_weights,
        nodes,
        meta,
    })
}

/// Quantization needs f32 storage for the other weights and an int4 group of at least 1.
fn check_quant(opts: &PlanOptions) -> Result<(), PlanEmitError> {
    let Some(q) = opts.quantize else {
        return Ok(());
    };
    if opts.dtype != WeightDType::F32 {
        return Err(PlanEmitError::Options(format!(
            "quantized plans keep the other weights f32, not {:?}",
            opts.dtype
        )));
    }
    if q.bits == QuantBits::Int4 && q.group == 0 {
        return Err(PlanEmitError::Options("int4 group 0 (must be >= 1)".into()));
    }
    Ok(())
}

fn plan_weights(
    graph: &Graph,
    weights: &Weights,
    dtype: WeightDType,
    ids: &mut HashMap<ValueId, u32>,
) -> Result<Vec<PlanWeight>, PlanEmitError> {
    let dtype = match dtype {
        WeightDType::F32 => PlanDType::F32,
        WeightDType::F16 => PlanDType::F16,
        WeightDType::BF16 => PlanDType::Bf16,
    };
    let mut out = Vec::new();
    for (i, v) in graph.values.iter().enumerate() {
        let ValueDef::Weight(name) = &v.def else {
            continue;
        };
        let info = weights
            .info(name)
            .ok_or_else(|| ImportError::MissingTensor {
                path: Default::default(),
                tensor: name.clone(),
            })?;
        let value = ids.len() as u32;
        ids.insert(ValueId(i as u32), value);
        out.push(PlanWeight {
            name: name.clone(),
            value,
            dtype,
            shape: info.shape.clone(),
            layout: PlanLayout::RowMajor,
            group: None,
            offset: 0,
            nbytes: (info.numel() * dtype.size()) as u64,
        });
    }
    Ok(out)
}

/// Gives every weight the packed layout that all the live nodes reading it stream
/// (`packed_layout`: `panels` for Linear and dense-FFN weights and attention q/k/pos_to_pk,
/// `expert_panels` for the attention's V/O experts and σ-MoE's keys/values).
fn choose_panels(graph: &Graph, ids: &HashMap<ValueId, u32>, weights: &mut [PlanWeight]) {
    let mut uses: HashMap<u32, Option<PlanLayout>> = HashMap::new();
    for (_, node) in graph.live_nodes() {
        for (slot, v) in node.inputs.iter().enumerate() {
            let Some(&id) = ids.get(v) else { continue };
            let wanted = packed_layout(&node.op, slot);
            let agreed = uses.entry(id).or_insert(wanted);
            if *agreed != wanted {
                *agreed = None;
            }
        }
    }
    for w in weights.iter_mut().filter(|w| !w.dtype.is_quantized()) {
        let Some(&Some(layout)) = uses.get(&w.value) else {
            continue;
        };
        if layout.stored_len(&w.shape).is_some() {
            w.layout = layout;
            w.nbytes = (w.stored_len() * w.dtype.size()) as u64;
        }
    }
}

/// `d_model` and `vocab_size` from the embedding table, `n_layers` from the attention nodes.
fn meta(
    graph: &Graph,
    weights: &[PlanWeight],
    chunk_size: Option<usize>,
) -> Result<PlanMeta, PlanEmitError> {
    let table = graph
        .live_nodes()
        .find(|(_, n)| n.op == Op::Embedding)
        .and_then(|(_, n)| graph.weight_name(n.inputs[1]))
        .and_then(|name| weights.iter().find(|w| w.name == name))
        .ok_or_else(|| PlanEmitError::Graph("no Embedding node with a weight table".into()))?;
    let [vocab_size, d_model] = table.shape[..] else {
        return Err(PlanEmitError::Graph(format!(
            "embedding table shape {:?} is not [V, D]",
            table.shape
        )));
    };
    let n_layers = graph
        .live_nodes()
        .filter(|(_, n)| matches!(n.op, Op::MoEAttention(_)))
        .count();
    Ok(PlanMeta {
        d_model,
        vocab_size,
        n_layers,
        chunk_size,
    })
}

/// Writes `plan` with the bytes of `weights` to `path` atomically (temporary file, then
/// rename); one weight is in memory at a time. `weights` must hold the graph's derived weights
/// (`crate::ir::materialize`).
pub fn write_plan_file(
    plan: &PlanGraph,
    weights: &Weights,
    path: &Path,
) -> Result<(), PlanEmitError> {
    let mut failed: Option<ImportError> = None;
    let result = write_atomic_with(path, |out| {
        write_plan(out, plan, |w, sink| {
            let t = weights.tensor(&w.name).map_err(|e| {
                let msg = e.to_string();
                failed = Some(e);
                std::io::Error::other(msg)
            })?;
            if let Some(bytes) = quantized_bytes(w, t.data()) {
                return sink.write_all(&bytes);
            }
            match (w.layout, &w.shape[..]) {
                (PlanLayout::Panels, &[out, inp]) => {
                    write_weight(&to_panels(t.data(), out, inp), w.dtype, sink)
                }
                (PlanLayout::ExpertPanels, &[experts, inp, out]) => write_weight(
                    &to_expert_panels(t.data(), experts, inp, out),
                    w.dtype,
                    sink,
                ),
                _ => write_weight(t.data(), w.dtype, sink),
            }
        })
    });
    match (failed, result) {
        (Some(e), _) => Err(e.into()),
        (None, r) => Ok(r?),
    }
}

/// Writes `data` as little-endian `dtype` in blocks (no full-size byte copy).
fn write_weight(
    data: &[f32],
    dtype: PlanDType,
    sink: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(64 << 10);
    for block in data.chunks(16 << 10) {
        buf.clear();
        match dtype {
            PlanDType::F16 => block
                .iter()
                .for_each(|&v| buf.extend(half::f16::from_f32(v).to_le_bytes())),
            PlanDType::Bf16 => block
                .iter()
                .for_each(|&v| buf.extend(half::bf16::from_f32(v).to_le_bytes())),
            _ => block.iter().for_each(|&v| buf.extend(v.to_le_bytes())),
        }
        sink.write_all(&buf)?;
    }
    Ok(())
}
