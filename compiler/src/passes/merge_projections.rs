//! `merge-projections`: one product for the projections that read the same input of an
//! attention layer.
//!
//! q and the output router (`sel_o`, or the gated variant's head gate) read the query side;
//! k and the value router (`sel_v`) read the key/value side. In self-attention without
//! memory both sides are one value, and the pass stacks all four weights into one derived
//! `qkr` weight (`concat_rows`: rows q, k, sel_v, sel_o) and marks the layer `merged=all`:
//! one product. Where the sides differ (Transformer-XL with memory: keys and the value
//! router also read the memory rows), it stacks each side: `qo` (q, sel_o) and `kv` (k,
//! sel_v), `merged=sides`, two products instead of four. The executors read q, k and the
//! router logits as column blocks of the products (views in the native kernels, `Slice` in
//! ONNX). Every output column is the same dot product as before, so results are identical.
//!
//! Skipped where a weight is not a plain checkpoint weight with a known `[rows, D]` fact.
//! The σ-MoE router has no partner: it is the only projection of its input that runs before
//! routing (the expert products depend on its result).

use switchhead_ops::op::{Merge, MoeAttentionAttrs, Op};

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

/// An unmerged attention whose q, k and routers are plain weights with known `[rows, D]`
/// facts.
fn mergeable(g: &Graph, op: &Op, inputs: &[ValueId]) -> bool {
    let Op::MoEAttention(a) = op else {
        return false;
    };
    if a.merged != Merge::None {
        return false;
    }
    let s = a.slots();
    let plain = |v: &ValueId| {
        g.weight_name(*v)
            .is_some_and(|w| !g.derived.contains_key(w))
            && matrix(g, *v).is_some()
    };
    [Some(s.q), Some(s.k), s.sel_v, s.sel_o]
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
    let input = |slot: Option<usize>| slot.map(|i| node.inputs[i]);
    let same_input = node.inputs.first() == node.inputs.get(1);
    let (merge, stacked) = if same_input {
        let parts = [Some(s.q), Some(s.k), s.sel_v, s.sel_o].map(input);
        (
            Merge::All,
            vec![stack(g, format!("{}.qkr", node.name), &parts)],
        )
    } else {
        let query = [Some(s.q), s.sel_o].map(input);
        let keys = [Some(s.k), s.sel_v].map(input);
        let qo = stack(g, format!("{}.qo", node.name), &query);
        let kv = stack(g, format!("{}.kv", node.name), &keys);
        (Merge::Sides, vec![qo, kv])
    };
    let merged = MoeAttentionAttrs { merged: merge, ..a };
    let mut inputs = vec![node.inputs[0], node.inputs[1]];
    inputs.extend(stacked);
    inputs.extend([node.inputs[s.v], node.inputs[s.o]]);
    inputs.extend(input(s.pos_to_pk));
    debug_assert_eq!(inputs.len(), Op::MoEAttention(merged).arity());
    if let Some(n) = g.nodes[id.0 as usize].as_mut() {
        n.op = Op::MoEAttention(merged);
        n.inputs = inputs;
    }
}

/// A derived weight `name`: the rows of `parts` (the present ones) stacked; a single part is
/// used as it is.
fn stack(g: &mut Graph, name: String, parts: &[Option<ValueId>]) -> ValueId {
    let parts: Vec<ValueId> = parts.iter().flatten().copied().collect();
    if let [one] = parts[..] {
        return one;
    }
    let names = parts
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
    g.derived_weight(&name, fact, Recipe::ConcatRows { parts: names })
}

/// `(rows, cols)` of a value with a known rank-2 fact.
fn matrix(g: &Graph, v: ValueId) -> Option<(usize, usize)> {
    match g.value(v).fact.as_ref().map(|f| &f.shape[..]) {
        Some([Dim::Known(r), Dim::Known(c)]) => Some((*r, *c)),
        _ => None,
    }
}
