//! The verifier: checks every invariant of [`Graph`] (see `graph.rs`).
//!
//! - each value's definition is consistent: an `Input` value is listed in `inputs` (once,
//!   under a unique name), weight names are unique, a `Node(n, slot)` value is output `slot`
//!   of node `n` (or `n` is a tombstone, and then nothing may use the value);
//! - each live node has `op.arity()` inputs and at least one output, and uses only values
//!   defined before it (inputs, weights, outputs of earlier live nodes);
//! - attributes are in range and, where the inputs' facts are known, fit them
//!   ([`infer::infer`]); a stored output fact agrees with the inferred one;
//! - graph outputs are defined by live nodes, inputs or weights, under unique names.
//!
//! Node errors name the node and quote its text line ([`text::node_text`]).

use std::collections::HashSet;

use super::graph::{Fact, Graph, Node, NodeId, ValueDef, ValueId};
use super::infer;
use super::text::{fact_text, node_text};

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerifyError {
    /// A node is malformed, uses a bad value, or its facts do not fit.
    #[error("node `{node}`: {problem}\n  at: {line}")]
    Node {
        node: String,
        line: String,
        problem: String,
    },
    /// A value's definition is inconsistent with the graph.
    #[error("value #{value} ({def}): {problem}")]
    Value {
        value: u32,
        def: String,
        problem: String,
    },
    /// A graph input or output is malformed.
    #[error("graph {kind} `{name}`: {problem}")]
    Interface {
        kind: &'static str,
        name: String,
        problem: String,
    },
}

/// Checks `g`; the first broken invariant is the error.
pub fn verify(g: &Graph) -> Result<(), VerifyError> {
    check_values(g)?;
    check_inputs(g)?;
    for (id, node) in g.live_nodes() {
        check_node(g, id, node).map_err(|problem| node_error(g, id, node, problem))?;
    }
    check_outputs(g)
}

fn node_error(g: &Graph, id: NodeId, node: &Node, problem: String) -> VerifyError {
    VerifyError::Node {
        node: node.name.clone(),
        line: node_text(g, id),
        problem,
    }
}

fn value_error(g: &Graph, i: usize, problem: String) -> VerifyError {
    VerifyError::Value {
        value: i as u32,
        def: format!("{:?}", g.values[i].def),
        problem,
    }
}

fn check_values(g: &Graph) -> Result<(), VerifyError> {
    let mut weights = HashSet::new();
    for (i, value) in g.values.iter().enumerate() {
        let problem = match &value.def {
            ValueDef::Input(_) if !g.inputs.contains(&ValueId(i as u32)) => {
                Some("not listed in the graph inputs".to_string())
            }
            ValueDef::Weight(name) if !weights.insert(name.as_str()) => {
                Some(format!("weight {name:?} defined twice"))
            }
            ValueDef::Node(n, slot) => node_def_problem(g, i, *n, *slot),
            _ => None,
        };
        if let Some(p) = problem {
            return Err(value_error(g, i, p));
        }
    }
    Ok(())
}

fn node_def_problem(g: &Graph, i: usize, n: NodeId, slot: u32) -> Option<String> {
    match g.nodes.get(n.0 as usize) {
        None => Some(format!("defined by node {} which does not exist", n.0)),
        Some(None) => None,
        Some(Some(node)) if node.outputs.get(slot as usize) == Some(&ValueId(i as u32)) => None,
        Some(Some(node)) => Some(format!(
            "claims output {slot} of node `{}`, which does not list it",
            node.name
        )),
    }
}

fn check_inputs(g: &Graph) -> Result<(), VerifyError> {
    let mut names = HashSet::new();
    let mut seen = HashSet::new();
    for &v in &g.inputs {
        let err = |name: &str, problem: &str| VerifyError::Interface {
            kind: "input",
            name: name.to_string(),
            problem: problem.to_string(),
        };
        let Some(ValueDef::Input(name)) = g.values.get(v.0 as usize).map(|x| &x.def) else {
            return Err(err(&format!("#{}", v.0), "not an input value"));
        };
        if !seen.insert(v) || !names.insert(name.as_str()) {
            return Err(err(name, "listed twice"));
        }
    }
    Ok(())
}

fn check_node(g: &Graph, id: NodeId, node: &Node) -> Result<(), String> {
    if node.inputs.len() != node.op.arity() {
        return Err(format!(
            "{} takes {} inputs, got {}",
            node.op.name(),
            node.op.arity(),
            node.inputs.len()
        ));
    }
    if node.outputs.is_empty() {
        return Err("no outputs".into());
    }
    for (i, &v) in node.inputs.iter().enumerate() {
        check_use(g, id, v).map_err(|p| format!("input {i}: {p}"))?;
    }
    for (slot, &v) in node.outputs.iter().enumerate() {
        let def = g.values.get(v.0 as usize).map(|x| &x.def);
        if def != Some(&ValueDef::Node(id, slot as u32)) {
            return Err(format!(
                "output {slot} (#{}) is not defined as this node's output",
                v.0
            ));
        }
    }
    check_facts(g, node)
}

/// A use of `v` by node `user` (or by the graph outputs when `user` is `None`).
fn check_use(g: &Graph, user: NodeId, v: ValueId) -> Result<(), String> {
    match g.values.get(v.0 as usize).map(|x| &x.def) {
        None => Err(format!("#{} does not exist", v.0)),
        Some(ValueDef::Node(src, _)) if *src >= user => {
            Err(format!("#{} is used before its definition", v.0))
        }
        Some(ValueDef::Node(src, _)) if matches!(g.nodes.get(src.0 as usize), Some(None)) => {
            Err(format!("#{} is defined by a removed node", v.0))
        }
        Some(_) => Ok(()),
    }
}

fn check_facts(g: &Graph, node: &Node) -> Result<(), String> {
    infer::check_attrs(&node.op).map_err(|e| e.to_string())?;
    let facts: Option<Vec<&Fact>> = node
        .inputs
        .iter()
        .map(|&v| g.value(v).fact.as_ref())
        .collect();
    let Some(facts) = facts else { return Ok(()) };
    let inferred = infer::infer(&node.op, &facts).map_err(|e| e.to_string())?;
    for (slot, (&v, want)) in node.outputs.iter().zip(&inferred).enumerate() {
        match &g.value(v).fact {
            Some(have) if !infer::facts_agree(have, want) => {
                return Err(format!(
                    "output {slot} has fact {} but its inputs imply {}",
                    fact_text(have),
                    fact_text(want)
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_outputs(g: &Graph) -> Result<(), VerifyError> {
    let mut names = HashSet::new();
    let end = NodeId(g.nodes.len() as u32);
    for (name, v) in &g.outputs {
        let err = |problem: String| VerifyError::Interface {
            kind: "output",
            name: name.clone(),
            problem,
        };
        if !names.insert(name.as_str()) {
            return Err(err("named twice".into()));
        }
        check_use(g, end, *v).map_err(err)?;
    }
    Ok(())
}
