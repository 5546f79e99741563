//! tract's ONNX framework with our ops registered, and the domain checks in their builders.
//!
//! tract looks builders up by `op_type` only, so each builder checks the node's domain and the
//! model's import of it itself (the same checks [`super::check_model`] reports as typed errors).

use tract_onnx::model::ParsingContext;
use tract_onnx::pb;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use super::attributes::{moe_attention_attrs, moe_attention_kv_cache, sigma_moe_attrs};
use super::moe_attention_op::MoEAttentionHir;
use super::names::{DOMAIN, DOMAIN_VERSION, MOE_ATTENTION, SIGMA_MOE};
use super::sigma_moe_op::SigmaMoeHir;

/// `tract_onnx::onnx()` plus `ai.switchhead::MoEAttention` and `ai.switchhead::SigmaMoE`.
pub fn switchhead_onnx() -> tract_onnx::Onnx {
    let mut onnx = tract_onnx::onnx();
    onnx.op_register.insert(MOE_ATTENTION, build_moe_attention);
    onnx.op_register.insert(SIGMA_MOE, build_sigma_moe);
    onnx
}

fn check_domain(ctx: &ParsingContext, node: &pb::NodeProto) -> TractResult<()> {
    ensure!(
        node.domain == DOMAIN,
        "{} expected in domain {DOMAIN:?}, node {:?} has domain {:?}",
        node.op_type,
        node.name,
        node.domain
    );
    let version = ctx
        .model
        .opset_import
        .iter()
        .find(|i| i.domain == DOMAIN)
        .map(|i| i.version);
    ensure!(
        version == Some(DOMAIN_VERSION),
        "node {:?}: the model imports {DOMAIN} version {version:?}, supported: {DOMAIN_VERSION}",
        node.name
    );
    Ok(())
}

fn build_moe_attention(
    ctx: &ParsingContext,
    node: &pb::NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    check_domain(ctx, node)?;
    let attrs = moe_attention_attrs(node)?;
    let kv_cache = moe_attention_kv_cache(node, &attrs)?;
    Ok((expand(MoEAttentionHir { attrs, kv_cache }), vec![]))
}

fn build_sigma_moe(
    ctx: &ParsingContext,
    node: &pb::NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    check_domain(ctx, node)?;
    let attrs = sigma_moe_attrs(node)?;
    Ok((expand(SigmaMoeHir { attrs }), vec![]))
}
