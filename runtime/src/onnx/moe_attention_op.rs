//! `ai.switchhead::MoEAttention` as a tract op: an inference-level [`Expansion`] that wires
//! the typed [`MoEAttentionOp`], whose `eval` runs `switchhead_kernels::moe_attention`.
//!
//! Inputs (order fixed by `Op::MoEAttention`): xq `[B,T,D]`, xkv `[B,Tk,D]`, q, k, v, o, then
//! sel_v and sel_o (experts_vo), sel_o (gated) or nothing (dense), then pos_to_pk (xl).
//! Output y `[B,T,D]` f32.

use switchhead_kernels::moe_attention::Dims;
use switchhead_kernels::{MoeAttentionWeights, moe_attention};
use switchhead_ops::op::{AttentionVariant, MoeAttentionAttrs, PosEncoding};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use super::attributes::moe_attention_arity;
use super::sigma_moe_op::{executor_threads, f32_slice, rank3};

/// The typed op: attributes only, weights are inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct MoEAttentionOp {
    pub attrs: MoeAttentionAttrs,
}

// tract compares ops with `Eq`; the f64 RoPE attributes come from finite ONNX floats.
impl Eq for MoEAttentionOp {}

impl Op for MoEAttentionOp {
    fn name(&self) -> StaticName {
        "MoEAttention".into()
    }
    fn info(&self) -> TractResult<Vec<String>> {
        let a = &self.attrs;
        Ok(vec![format!(
            "heads {} experts {} k {} d_head {} {:?} {:?}",
            a.heads, a.experts, a.k, a.d_head, a.variant, a.pos
        )])
    }
    op_as_typed_op!();
}

impl EvalOp for MoEAttentionOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let a = &self.attrs;
        let [b, t, d] = rank3(&inputs[0], "xq")?;
        let [b2, tk, d2] = rank3(&inputs[1], "xkv")?;
        ensure!(
            b == b2 && d == d2,
            "MoEAttention: xq [{b},{t},{d}] and xkv [{b2},{tk},{d2}] disagree"
        );
        let slice = |i: usize| f32_slice(&inputs[i]);
        let mut next = 6;
        let mut take = || {
            next += 1;
            slice(next - 1)
        };
        let (sel_v, sel_o) = match a.variant {
            AttentionVariant::ExpertsVO => (Some(take()?), Some(take()?)),
            AttentionVariant::Gated => (None, Some(take()?)),
            AttentionVariant::Dense => (None, None),
        };
        let pos_to_pk = if a.pos == PosEncoding::Xl {
            Some(take()?)
        } else {
            None
        };
        let w = MoeAttentionWeights {
            q: slice(2)?,
            k: slice(3)?,
            v: slice(4)?,
            o: slice(5)?,
            sel_v,
            sel_o,
            pos_to_pk,
        };
        let dims = Dims { batch: b, t, tk, d };
        let y = moe_attention(a, &w, slice(0)?, slice(1)?, dims, executor_threads())
            .map_err(|e| anyhow!("MoEAttention: {e}"))?;
        Ok(tvec!(Tensor::from_shape(&[b, t, d], &y)?.into_tvalue()))
    }
}

impl TypedOp for MoEAttentionOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs.len() == moe_attention_arity(&self.attrs),
            "MoEAttention: wrong input count"
        );
        ensure!(
            inputs.iter().all(|f| f.datum_type == f32::datum_type()),
            "MoEAttention: every input must be f32"
        );
        ensure!(inputs[0].rank() == 3, "MoEAttention: xq must be [B, T, D]");
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }
    as_op!();
}

/// The inference-level wrapper the ONNX parser builds.
#[derive(Debug, Clone)]
pub(crate) struct MoEAttentionHir {
    pub attrs: MoeAttentionAttrs,
}

impl Expansion for MoEAttentionHir {
    fn name(&self) -> StaticName {
        "MoEAttention".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        s.equals(&inputs[0].rank, 3)?;
        same_shape_f32_rules(s, inputs, outputs, moe_attention_arity(&self.attrs))
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, MoEAttentionOp { attrs: self.attrs }, inputs)
    }
}

/// Inference rules shared by our ops: `arity` inputs, one f32 output shaped like input 0.
pub(crate) fn same_shape_f32_rules<'r, 'p: 'r>(
    s: &mut Solver<'r>,
    inputs: &'p [TensorProxy],
    outputs: &'p [TensorProxy],
    arity: usize,
) -> InferenceResult {
    check_input_arity(inputs, arity)?;
    check_output_arity(outputs, 1)?;
    s.equals(&outputs[0].datum_type, f32::datum_type())?;
    s.equals(&inputs[0].shape, &outputs[0].shape)
}
