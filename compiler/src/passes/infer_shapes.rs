//! `infer-shapes`: sets every node output's fact from its inputs' facts ([`infer::infer`]).
//!
//! Graph inputs and weights must carry facts; after the pass every value used by a live node
//! or the graph outputs has one.

use super::{Changed, Pass, PassError};
use crate::ir::graph::{Fact, Graph, NodeId};
use crate::ir::infer;
use crate::ir::text::node_text;

/// The shape-inference pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct InferShapes;

impl Pass for InferShapes {
    fn name(&self) -> &'static str {
        "infer-shapes"
    }

    fn run(&self, g: &mut Graph) -> Result<Changed, PassError> {
        let mut changed = false;
        let ids: Vec<NodeId> = g.live_nodes().map(|(id, _)| id).collect();
        for id in ids {
            let facts = node_facts(g, id)?;
            let Some(node) = g.nodes[id.0 as usize].as_ref() else {
                continue;
            };
            for (&v, f) in node.outputs.clone().iter().zip(facts) {
                let slot = &mut g.values[v.0 as usize].fact;
                changed |= slot.as_ref() != Some(&f);
                *slot = Some(f);
            }
        }
        Ok(Changed::from_bool(changed))
    }
}

/// The inferred output facts of node `id`.
fn node_facts(g: &Graph, id: NodeId) -> Result<Vec<Fact>, PassError> {
    let Some(node) = g.nodes[id.0 as usize].as_ref() else {
        return Ok(Vec::new());
    };
    let line = || node_text(g, id);
    let mut facts = Vec::with_capacity(node.inputs.len());
    for (input, &v) in node.inputs.iter().enumerate() {
        let f = g.value(v).fact.as_ref();
        facts.push(f.ok_or_else(|| PassError::MissingFact {
            node: node.name.clone(),
            line: line(),
            input,
        })?);
    }
    infer::infer(&node.op, &facts).map_err(|source| PassError::Infer {
        node: node.name.clone(),
        line: line(),
        source,
    })
}
