//! Compaction: drops tombstoned nodes and the values nothing needs, renumbering ids.
//!
//! Kept: every graph input, every weight used by a live node or a graph output, every output
//! of a live node, in their original relative order, and the recipes of the derived weights
//! kept. Node order is preserved, so
//! defined-before-use still holds.

use crate::ir::graph::{Graph, NodeId, Value, ValueDef, ValueId};

/// Compacts `g` in place (see the module docs); returns whether anything was removed.
pub fn compact(g: &mut Graph) -> bool {
    let keep = kept_values(g);
    let node_map = node_map(g);
    let mut value_map = vec![None; g.values.len()];
    let mut values = Vec::new();
    for (i, v) in g.values.iter().enumerate().filter(|(i, _)| keep[*i]) {
        value_map[i] = Some(ValueId(values.len() as u32));
        let def = match &v.def {
            ValueDef::Node(n, slot) => ValueDef::Node(node_map[n.0 as usize].unwrap_or(*n), *slot),
            other => other.clone(),
        };
        values.push(Value {
            def,
            fact: v.fact.clone(),
        });
    }
    let changed = values.len() != g.values.len() || g.nodes.iter().any(Option::is_none);
    let map = |v: &ValueId| value_map[v.0 as usize].unwrap_or(*v);
    g.nodes = std::mem::take(&mut g.nodes)
        .into_iter()
        .flatten()
        .map(Some)
        .collect();
    for node in g.nodes.iter_mut().flatten() {
        node.inputs = node.inputs.iter().map(map).collect();
        node.outputs = node.outputs.iter().map(map).collect();
    }
    g.inputs = g.inputs.iter().map(map).collect();
    g.outputs = g.outputs.iter().map(|(n, v)| (n.clone(), map(v))).collect();
    g.values = values;
    let before = g.derived.len();
    let weights: std::collections::HashSet<&str> = g
        .values
        .iter()
        .filter_map(|v| match &v.def {
            ValueDef::Weight(n) => Some(n.as_str()),
            _ => None,
        })
        .collect();
    let mut derived = std::mem::take(&mut g.derived);
    derived.retain(|name, _| weights.contains(name.as_str()));
    g.derived = derived;
    changed || g.derived.len() != before
}

fn kept_values(g: &Graph) -> Vec<bool> {
    let mut keep = vec![false; g.values.len()];
    let used = g
        .live_nodes()
        .flat_map(|(_, n)| n.inputs.iter().chain(&n.outputs));
    let interface = g.inputs.iter().chain(g.outputs.iter().map(|(_, v)| v));
    for v in used.chain(interface) {
        if let Some(k) = keep.get_mut(v.0 as usize) {
            *k = true;
        }
    }
    keep
}

fn node_map(g: &Graph) -> Vec<Option<NodeId>> {
    let mut next = 0;
    g.nodes
        .iter()
        .map(|n| {
            n.as_ref().map(|_| {
                next += 1;
                NodeId(next - 1)
            })
        })
        .collect()
}
