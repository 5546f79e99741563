//! `fold-layernorm`: folds a LayerNorm's affine parameters into the projections that read it.
//!
//! `LN(x) = n(x) * gain + bias`, so a consumer `y = LN(x) @ W^T + b` equals
//! `n(x) @ (W * gain)^T + (b + W @ bias)`: the gain scales W's input columns and the bias
//! moves into the consumer's bias, leaving a LayerNorm with unit gain and zero bias. Applied
//! where that is exact, i.e. where every consumer of the LayerNorm's output is a `Linear` with
//! a bias or a `DenseFfn` (its first product has one) reading it as input 0, and the output is
//! not a graph output. The attention and σ-MoE have no biases, so the LayerNorm before them
//! is left alone. The folded weights are derived weights ([`crate::ir::derived`]) computed at
//! emission; the result equals the unfolded graph up to f32 rounding.

use std::collections::HashMap;

use switchhead_ops::op::Op;

use super::{Changed, Pass, PassError};
use crate::ir::derived::Recipe;
use crate::ir::graph::{Dim, Fact, Graph, NodeId, ValueId};

/// The LayerNorm-folding pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct FoldLayerNorm;

impl Pass for FoldLayerNorm {
    fn name(&self) -> &'static str {
        "fold-layernorm"
    }

    fn run(&self, g: &mut Graph) -> Result<Changed, PassError> {
        let uses = uses(g);
        let folds: Vec<(NodeId, Vec<NodeId>)> = g
            .live_nodes()
            .filter(|(_, n)| matches!(n.op, Op::LayerNorm { .. }))
            .filter_map(|(id, _)| foldable(g, id, &uses).map(|c| (id, c)))
            .collect();
        for (norm, consumers) in &folds {
            fold(g, *norm, consumers);
        }
        Ok(Changed::from_bool(!folds.is_empty()))
    }
}

/// Every (node, input slot) reading each value.
fn uses(g: &Graph) -> HashMap<ValueId, Vec<(NodeId, usize)>> {
    let mut uses: HashMap<ValueId, Vec<(NodeId, usize)>> = HashMap::new();
    for (id, n) in g.live_nodes() {
        for (slot, v) in n.inputs.iter().enumerate() {
            uses.entry(*v).or_default().push((id, slot));
        }
    }
    uses
}

/// The consumers of LayerNorm `id` if its affine parameters can be folded into them.
fn foldable(
    g: &Graph,
    id: NodeId,
    uses: &HashMap<ValueId, Vec<(NodeId, usize)>>,
) -> Option<Vec<NodeId>> {
    let n = g.nodes[id.0 as usize].as_ref()?;
    let out = n.outputs[0];
    // a weight of the checkpoint (not derived) whose fact is known
    let plain = |v: ValueId| {
        g.weight_name(v).is_some_and(|w| !g.derived.contains_key(w)) && g.value(v).fact.is_some()
    };
    let sized = fact_len(g, n.inputs[1]) > 0;
    if !sized
        || !plain(n.inputs[1])
        || !plain(n.inputs[2])
        || g.outputs.iter().any(|(_, v)| *v == out)
    {
        return None;
    }
    let consumers = uses.get(&out)?;
    let ok = consumers.iter().all(|&(c, slot)| {
        let Some(node) = g.nodes[c.0 as usize].as_ref() else {
            return false;
        };
        let takes = matches!(node.op, Op::Linear { bias: true } | Op::DenseFfn);
        takes && slot == 0 && plain(node.inputs[1]) && plain(node.inputs[2])
    });
    ok.then(|| consumers.iter().map(|&(c, _)| c).collect())
}

fn fold(g: &mut Graph, norm: NodeId, consumers: &[NodeId]) {
    let Some(n) = g.nodes[norm.0 as usize].clone() else {
        return;
    };
    let name = |g: &Graph, v: ValueId| g.weight_name(v).unwrap_or_default().to_string();
    let (gain, bias) = (name(g, n.inputs[1]), name(g, n.inputs[2]));
    for &c in consumers {
        let Some(node) = g.nodes[c.0 as usize].clone() else {
            continue;
        };
        let (w, b) = (node.inputs[1], node.inputs[2]);
        let (w_name, b_name) = (name(g, w), name(g, b));
        let scaled = Recipe::ScaleInputs {
            weight: w_name.clone(),
            gain: gain.clone(),
        };
        let shifted = Recipe::ShiftBias {
            weight: w_name.clone(),
            shift: bias.clone(),
            bias: b_name.clone(),
        };
        let new_w = derived(g, format!("{w_name}.fold({gain})"), w, scaled);
        let new_b = derived(g, format!("{b_name}.fold({bias})"), b, shifted);
        if let Some(node) = g.nodes[c.0 as usize].as_mut() {
            node.inputs[1] = new_w;
            node.inputs[2] = new_b;
        }
    }
    let len = fact_len(g, n.inputs[1]);
    let ones = Recipe::Fill { value: 1.0, len };
    let zeros = Recipe::Fill { value: 0.0, len };
    let unit = derived(g, format!("{gain}.unit"), n.inputs[1], ones);
    let zero = derived(g, format!("{bias}.zero"), n.inputs[2], zeros);
    if let Some(node) = g.nodes[norm.0 as usize].as_mut() {
        node.inputs[1] = unit;
        node.inputs[2] = zero;
    }
}

/// A derived weight with the fact of `like` (known: `foldable` checked it).
fn derived(g: &mut Graph, name: String, like: ValueId, recipe: Recipe) -> ValueId {
    let fact = g.value(like).fact.clone().unwrap_or(Fact {
        dtype: crate::ir::DType::F32,
        shape: vec![],
    });
    g.derived_weight(&name, fact, recipe)
}

/// The length of a `[D]` weight from its fact (0 when unknown).
fn fact_len(g: &Graph, v: ValueId) -> usize {
    match g.value(v).fact.as_ref().map(|f| &f.shape[..]) {
        Some([Dim::Known(n)]) => *n,
        _ => 0,
    }
}
