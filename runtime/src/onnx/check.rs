//! Checks of a model's operator sets and nodes, before tract sees it, so that every problem
//! becomes a typed error naming the node: our domain at version 1, our ops only in our domain,
//! no unknown domain, no operator neither tract nor we implement, right input counts.

use tract_onnx::pb;

use super::attributes::{
    moe_attention_arity, moe_attention_attrs, moe_attention_kv_cache, sigma_moe_attrs,
};
use super::names::{DOMAIN, DOMAIN_VERSION, MOE_ATTENTION, SIGMA_MOE};
use crate::RuntimeError;

/// Checks the opset imports and every node of the main graph.
pub fn check_model(
    model: &pb::ModelProto,
    framework: &tract_onnx::Onnx,
) -> Result<(), RuntimeError> {
    let ours = check_imports(model)?;
    let Some(graph) = &model.graph else {
        return Ok(());
    };
    for node in &graph.node {
        check_node(node, ours, framework)?;
    }
    Ok(())
}

/// Returns whether the model imports our domain (at the supported version).
fn check_imports(model: &pb::ModelProto) -> Result<bool, RuntimeError> {
    let Some(import) = model.opset_import.iter().find(|i| i.domain == DOMAIN) else {
        return Ok(false);
    };
    if import.version != DOMAIN_VERSION {
        return Err(RuntimeError::UnsupportedDomainVersion {
            domain: DOMAIN.into(),
            version: import.version,
            supported: DOMAIN_VERSION,
        });
    }
    Ok(true)
}

fn check_node(
    node: &pb::NodeProto,
    ours: bool,
    framework: &tract_onnx::Onnx,
) -> Result<(), RuntimeError> {
    let is_ours = matches!(node.op_type.as_str(), MOE_ATTENTION | SIGMA_MOE);
    match node.domain.as_str() {
        DOMAIN if !ours => Err(domain_err(
            node,
            format!("which the model does not import (no opset_import for {DOMAIN})"),
        )),
        DOMAIN if is_ours => check_custom(node),
        DOMAIN => Err(unknown(node)),
        _ if is_ours => Err(domain_err(
            node,
            format!("but {} is only defined in {DOMAIN}", node.op_type),
        )),
        "" | "ai.onnx" if framework.op_register.0.contains_key(&node.op_type) => Ok(()),
        "" | "ai.onnx" => Err(unknown(node)),
        _ => Err(domain_err(
            node,
            "a domain this runtime does not implement".into(),
        )),
    }
}

fn check_custom(node: &pb::NodeProto) -> Result<(), RuntimeError> {
    let (want, outputs) = match node.op_type.as_str() {
        MOE_ATTENTION => {
            let attrs = moe_attention_attrs(node)?;
            let kv = usize::from(moe_attention_kv_cache(node, &attrs)?);
            (moe_attention_arity(&attrs) + 2 * kv, 1 + 2 * kv)
        }
        _ => {
            sigma_moe_attrs(node)?;
            (4, 1)
        }
    };
    let got = node.input.len();
    if want != got || node.output.len() != outputs {
        return Err(RuntimeError::ShapeMismatch {
            tensor: format!("inputs/outputs of node {:?} ({})", node.name, node.op_type),
            expected: format!("{want} inputs, {outputs} output(s)"),
            got: format!("{got} inputs, {} outputs", node.output.len()),
        });
    }
    Ok(())
}

fn domain_err(node: &pb::NodeProto, reason: String) -> RuntimeError {
    RuntimeError::UnsupportedDomain {
        node: node.name.clone(),
        op_type: node.op_type.clone(),
        domain: node.domain.clone(),
        reason,
    }
}

fn unknown(node: &pb::NodeProto) -> RuntimeError {
    let domain = if node.domain.is_empty() {
        "ai.onnx"
    } else {
        node.domain.as_str()
    };
    RuntimeError::UnknownOp {
        node: node.name.clone(),
        op_type: node.op_type.clone(),
        domain: domain.into(),
    }
}
