//! `merge-projections`: one product for every projection that reads an attention layer's
//! input.
//!
//! In self-attention without memory, q, k and the routers (`sel_v`, `sel_o`, or the gated
//! variant's head gate) all multiply the same LayerNorm output. The pass stacks their
//! weights into one derived `qkr` weight (`concat_rows`, rows q, k, sel_v, sel_o) and marks
//! the `MoEAttention` `merged`: the executors run one product and read q, k and the router
//! logits as column blocks of it (views in the native kernels, `Slice` in ONNX). Every
//! output column is the same dot product as before, so results are identical.
//!
//! Skipped where xq and xkv differ (Transformer-XL with memory: keys and the value router
//! read memory rows that queries do not) or where a weight is not a plain checkpoint
//! weight. The σ-MoE router has no partner: it is the only projection of its input that
//! runs before routing (the expert products depend on its result).

use switchhead_ops::op::Op;

use super::{Changed, Pass, PassError};
use crate::ir::derived::Recipe;
use crate::ir::graph::{Dim, Fact, Graph, NodeId, ValueId};

/// The projection-merging pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct MergeProjections;

impl Pass for MergeProjections {
    fn name(&self) -> &'static str {
        "merge-projections"
    }

    fn run(&self, g: &mut Graph) -> Result<Changed, PassError> {
        let nodes: Vec<NodeId> = g
            .live_nodes()
            .filter(|(_, n)| mergeable(g, &n.op, &n.inputs))
            .map(|(id, _)| id)
            .collect();
        for &id in &nodes {
            merge(g, id);
        }
        Ok(Changed::from_bool(!nodes.is_empty()))
    }
}

/// An unmerged attention whose query and key/value sides are one value and whose q, k and
/// routers are plain weights with known `[rows, D]` facts.
fn mergeable(g: &Graph, op: &Op, inputs: &[ValueId]) -> bool {
    let Op::MoEAttention(a) = op else {
        return false;
    };
    if a.merged || inputs.first() != inputs.get(1) {
        return false;
    }
    let s = a.slots();
    let plain = |v: &ValueId| {
        g.weight_name(*v)
            .is_some_and(|w| !g.derived.contains_key(w))
            && matrix(g, *v).is_some()
    };
    let parts = [Some(s.q), Some(s.k), s.sel_v, s.sel_o];
    parts
        .into_iter()
        .flatten()
        .all(|i| inputs.get(i).is_some_and(plain))
}

fn merge(g: &mut Graph, id: NodeId) {
    let Some(node) = g.nodes[id.0 as usize].clone() else {
        return;
    };
    let Op::MoEAttention(a) = node.op else {
        return;
    };
    let s = a.slots();
    let parts: Vec<ValueId> = [Some(s.q), Some(s.k), s.sel_v, s.sel_o]
        .into_iter()
        .flatten()
        .map(|i| node.inputs[i])
        .collect();
    let names: Vec<String> = parts
        .iter()
        .map(|&v| g.weight_name(v).unwrap_or_default().to_string())
        .collect();
    let (rows, d) = parts.iter().fold((0, 0), |(rows, _), &v| {
        let (r, d) = matrix(g, v).unwrap_or_default();
        (rows + r, d)
    });
    let fact = Fact {
        dtype: crate::ir::DType::F32,
        shape: vec![Dim::Known(rows), Dim::Known(d)],
    };
    let name = format!("{}.qkr", node.name);
    let qkr = g.derived_weight(&name, fact, Recipe::ConcatRows { parts: names });
    let merged = switchhead_ops::op::MoeAttentionAttrs { merged: true, ..a };
    let mut inputs = vec![node.inputs[0], node.inputs[1], qkr];
    inputs.extend([node.inputs[s.v], node.inputs[s.o]]);
    inputs.extend(s.pos_to_pk.map(|i| node.inputs[i]));
    debug_assert_eq!(inputs.len(), Op::MoEAttention(merged).arity());
    if let Some(n) = g.nodes[id.0 as usize].as_mut() {
        n.op = Op::MoEAttention(merged);
        n.inputs = inputs;
    }
}

/// `(rows, cols)` of a value with a known rank-2 fact.
fn matrix(g: &Graph, v: ValueId) -> Option<(usize, usize)> {
    match g.value(v).fact.as_ref().map(|f| &f.shape[..]) {
        Some([Dim::Known(r), Dim::Known(c)]) => Some((*r, *c)),
        _ => None,
    }
}
