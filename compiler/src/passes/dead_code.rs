//! `dead-code`: removes nodes none of whose outputs reaches a graph output, then compacts
//! ([`compact`]), which also drops weights only dead nodes used.
//!
//! Afterwards every live node's output reaches a graph output.

use super::{Changed, Pass, PassError, compact};
use crate::ir::graph::{Graph, NodeId, ValueDef};

/// The dead-code elimination pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeadCode;

impl Pass for DeadCode {
    fn name(&self) -> &'static str {
        "dead-code"
    }

    fn run(&self, g: &mut Graph) -> Result<Changed, PassError> {
        let live = live_nodes(g);
        for (i, slot) in g.nodes.iter_mut().enumerate() {
            if !live[i] {
                *slot = None;
            }
        }
        Ok(Changed::from_bool(compact(g)))
    }
}

/// Which nodes (by index) some graph output depends on.
pub fn live_nodes(g: &Graph) -> Vec<bool> {
    let mut live = vec![false; g.nodes.len()];
    let mut stack: Vec<NodeId> = g
        .outputs
        .iter()
        .filter_map(|(_, v)| producer(g, *v))
        .collect();
    while let Some(id) = stack.pop() {
        let Some(Some(node)) = g.nodes.get(id.0 as usize) else {
            continue;
        };
        if std::mem::replace(&mut live[id.0 as usize], true) {
            continue;
        }
        stack.extend(node.inputs.iter().filter_map(|v| producer(g, *v)));
    }
    live
}

fn producer(g: &Graph, v: crate::ir::ValueId) -> Option<NodeId> {
    match g.values.get(v.0 as usize).map(|x| &x.def) {
        Some(ValueDef::Node(n, _)) => Some(*n),
        _ => None,
    }
}
