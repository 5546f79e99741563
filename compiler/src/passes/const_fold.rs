//! `const-fold`: folds nodes whose result is known from facts alone, exactly.
//!
//! The IR holds no tensor bytes, so a node whose inputs are all weights (e.g. `Add` of two
//! weights) cannot be evaluated here; it is left alone (none occurs in lowered models). What
//! folds is shape-determined: a `ConcatSeq` whose operand has a known sequence length of 0
//! is its other operand (rule [`concat_empty`]). Needs facts (run after `infer-shapes`); the
//! folded nodes become tombstones for `dead-code` to compact.

use super::rewrite::{Patch, Rule, apply_rules};
use super::{Changed, Pass, PassError};
use crate::ir::graph::{Dim, Graph, Node, NodeId, ValueId};
use switchhead_ops::op::Op;

/// The constant-folding pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConstFold;

/// The rules of the pass, in priority order.
pub const RULES: &[Rule] = &[concat_empty];

impl Pass for ConstFold {
    fn name(&self) -> &'static str {
        "const-fold"
    }

    fn run(&self, g: &mut Graph) -> Result<Changed, PassError> {
        Ok(Changed::from_bool(apply_rules(g, RULES) > 0))
    }
}

/// `ConcatSeq(a, b)` with `a` or `b` of known length 0 on axis 1 -> the other operand
/// (only when the result's fact, if known, equals the operand's).
pub fn concat_empty(g: &Graph, id: NodeId, node: &Node) -> Option<Patch> {
    if node.op != Op::ConcatSeq {
        return None;
    }
    let (a, b) = (node.inputs[0], node.inputs[1]);
    let keep = match (empty_seq(g, a), empty_seq(g, b)) {
        (true, _) => b,
        (_, true) => a,
        _ => return None,
    };
    let same_fact = g
        .value(node.outputs[0])
        .fact
        .as_ref()
        .is_none_or(|f| Some(f) == g.value(keep).fact.as_ref());
    same_fact.then_some(Patch::ReplaceWith {
        node: id,
        with: keep,
    })
}

fn empty_seq(g: &Graph, v: ValueId) -> bool {
    g.value(v)
        .fact
        .as_ref()
        .is_some_and(|f| f.shape.get(1) == Some(&Dim::Known(0)))
}
