//! Local rewrites: rules look at one node of an unchanged graph and return a [`Patch`]; the
//! driver applies all patches afterwards (a graph is never mutated while being matched).

use crate::ir::graph::{Graph, Node, NodeId, ValueId};

/// One local change.
#[derive(Debug, Clone, PartialEq)]
pub enum Patch {
    /// Every use of `node`'s single output becomes a use of `with`; `node` is removed.
    ReplaceWith { node: NodeId, with: ValueId },
}

/// A named rewrite rule.
pub type Rule = fn(&Graph, NodeId, &Node) -> Option<Patch>;

/// Matches every live node against `rules` (first match wins), then applies the patches.
/// Returns how many were applied.
pub fn apply_rules(g: &mut Graph, rules: &[Rule]) -> usize {
    let patches: Vec<Patch> = g
        .live_nodes()
        .filter_map(|(id, n)| rules.iter().find_map(|r| r(g, id, n)))
        .collect();
    // Patches are applied in node order; a later patch's `with` may be an earlier one's
    // removed output, so resolve through the replacements made so far.
    let mut replaced: Vec<(ValueId, ValueId)> = Vec::new();
    for p in &patches {
        let Patch::ReplaceWith { node, with } = p;
        let with = resolve(&replaced, *with);
        let Some(old) = g.nodes[node.0 as usize].take() else {
            continue;
        };
        let out = old.outputs[0];
        replace_uses(g, out, with);
        replaced.push((out, with));
    }
    patches.len()
}

fn resolve(replaced: &[(ValueId, ValueId)], mut v: ValueId) -> ValueId {
    while let Some(&(_, to)) = replaced.iter().find(|(from, _)| *from == v) {
        v = to;
    }
    v
}

/// Replaces every use of `old` (node inputs and graph outputs) by `new`.
pub fn replace_uses(g: &mut Graph, old: ValueId, new: ValueId) {
    for node in g.nodes.iter_mut().flatten() {
        node.inputs
            .iter_mut()
            .filter(|v| **v == old)
            .for_each(|v| *v = new);
    }
    g.outputs
        .iter_mut()
        .filter(|(_, v)| *v == old)
        .for_each(|(_, v)| *v = new);
}
