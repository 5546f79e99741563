//! `ai.switchhead::MoEAttention` as a tract op: an inference-level [`Expansion`] that wires
//! the typed [`MoEAttentionOp`], whose `eval` runs `switchhead_kernels::moe_attention`.
//!
//! Inputs (order fixed by `Op::MoEAttention`): xq `[B,T,D]`, xkv `[B,Tk,D]`, q, k, v, o, then
//! sel_v and sel_o (experts_vo), sel_o (gated) or nothing (dense), then pos_to_pk (xl).
//! Output y `[B,T,D]` f32. With `kv_cache` (RoPE), two more inputs `past_key`,
//! `past_value` `[B,H,P,dh]` and two more outputs `present_key`, `present_value`
//! `[B,H,P+T,dh]` (xkv is xq); the step runs `switchhead_kernels::moe_attention_kv`.

use std::sync::Arc;

use switchhead_kernels::moe_attention::{Dims, PositionKeyCache};
use switchhead_kernels::{
    KvPast, MoeAttentionWeights, Projections, WeightRef, moe_attention, moe_attention_kv,
};
use switchhead_ops::op::{Merge, MoeAttentionAttrs};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use super::attributes::moe_attention_arity;
use super::sigma_moe_op::{executor_threads, f32_slice, rank3};

/// The typed op: attributes only, weights are inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct MoEAttentionOp {
    pub attrs: MoeAttentionAttrs,
    /// Takes `past_key`/`past_value` and returns the present cache too.
    pub kv_cache: bool,
    /// The node's XL position keys, kept between runs.
    pub pos_keys: SharedPosKeys,
}

/// A node's [`PositionKeyCache`]: a cache, not part of what the op computes, so any two
/// compare equal.
#[derive(Debug, Clone, Default)]
pub struct SharedPosKeys(pub Arc<PositionKeyCache>);

impl PartialEq for SharedPosKeys {
    fn eq(&self, _: &Self) -> bool {
        true
    }
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
            "heads {} experts {} k {} d_head {} {:?} {:?} kv_cache {}",
            a.heads, a.experts, a.k, a.d_head, a.variant, a.pos, self.kv_cache
        )])
    }
    op_as_typed_op!();
}

impl EvalOp for MoEAttentionOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let [b, t, d] = rank3(&inputs[0], "xq")?;
        let [b2, tk, d2] = rank3(&inputs[1], "xkv")?;
        ensure!(
            b == b2 && d == d2,
            "MoEAttention: xq [{b},{t},{d}] and xkv [{b2},{tk},{d2}] disagree"
        );
        let w = self.weights(&inputs)?;
        let dims = Dims { batch: b, t, tk, d };
        if self.kv_cache {
            return self.eval_kv(&inputs, &w, dims);
        }
        let xq = f32_slice(&inputs[0])?;
        let y = moe_attention(
            &self.attrs,
            &w,
            xq,
            f32_slice(&inputs[1])?,
            dims,
            executor_threads(),
        )
        .map_err(|e| anyhow!("MoEAttention: {e}"))?;
        Ok(tvec!(Tensor::from_shape(&[b, t, d], &y)?.into_tvalue()))
    }
}

impl MoEAttentionOp {
    /// The weight inputs, in the order `Op::MoEAttention` fixes.
    fn weights<'a>(&'a self, inputs: &'a [TValue]) -> TractResult<MoeAttentionWeights<'a>> {
        let s = self.attrs.slots();
        let slice = |i: usize| f32_slice(&inputs[i]).map(WeightRef::row_major);
        let optional = |i: Option<usize>| i.map(slice).transpose();
        let proj = match self.attrs.merged {
            Merge::All => Projections::Merged(slice(s.q)?),
            Merge::Sides => Projections::Sides {
                qo: slice(s.q)?,
                kv: slice(s.k)?,
            },
            Merge::None => Projections::Separate {
                q: slice(s.q)?,
                k: slice(s.k)?,
                sel_v: optional(s.sel_v)?,
                sel_o: optional(s.sel_o)?,
            },
        };
        Ok(MoeAttentionWeights {
            proj,
            v: slice(s.v)?,
            o: slice(s.o)?,
            pos_to_pk: optional(s.pos_to_pk)?,
            pos_keys: Some(&self.pos_keys.0),
        })
    }

    /// One KV-cache step: past key/value follow the weights.
    fn eval_kv(
        &self,
        inputs: &[TValue],
        w: &MoeAttentionWeights<'_>,
        dims: Dims,
    ) -> TractResult<TVec<TValue>> {
        let (h, dh) = (self.attrs.heads, self.attrs.d_head);
        let at = moe_attention_arity(&self.attrs);
        let shape = inputs[at].shape();
        ensure!(
            shape.len() == 4 && shape[0] == dims.batch && shape[1] == h && shape[3] == dh,
            "MoEAttention: past_key must be [{}, {h}, P, {dh}], got {shape:?}",
            dims.batch
        );
        ensure!(
            inputs[at + 1].shape() == shape,
            "MoEAttention: past_value {:?} differs from past_key {shape:?}",
            inputs[at + 1].shape()
        );
        let past = KvPast {
            key: f32_slice(&inputs[at])?,
            value: f32_slice(&inputs[at + 1])?,
            past: shape[2],
        };
        let x = f32_slice(&inputs[0])?;
        let step = moe_attention_kv(&self.attrs, w, x, dims, past, executor_threads())
            .map_err(|e| anyhow!("MoEAttention: {e}"))?;
        let present = [dims.batch, h, shape[2] + dims.t, dh];
        Ok(tvec!(
            Tensor::from_shape(&[dims.batch, dims.t, dims.d], &step.y)?.into_tvalue(),
            Tensor::from_shape(&present, &step.key)?.into_tvalue(),
            Tensor::from_shape(&present, &step.value)?.into_tvalue(),
        ))
    }
}

impl TypedOp for MoEAttentionOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let arity = moe_attention_arity(&self.attrs);
        ensure!(
            inputs.len() == arity + 2 * usize::from(self.kv_cache),
            "MoEAttention: wrong input count"
        );
        ensure!(
            inputs.iter().all(|f| f.datum_type == f32::datum_type()),
            "MoEAttention: every input must be f32"
        );
        ensure!(inputs[0].rank() == 3, "MoEAttention: xq must be [B, T, D]");
        let y = f32::fact(inputs[0].shape.clone());
        if !self.kv_cache {
            return Ok(tvec!(y));
        }
        let past = &inputs[arity].shape;
        ensure!(
            past.rank() == 4,
            "MoEAttention: past_key must be [B, H, P, dh]"
        );
        let total = past[2].clone() + inputs[0].shape[1].clone();
        let present = f32::fact([past[0].clone(), past[1].clone(), total, past[3].clone()]);
        Ok(tvec!(y, present.clone(), present))
    }
    as_op!();
}

/// The inference-level wrapper the ONNX parser builds.
#[derive(Debug, Clone)]
pub(crate) struct MoEAttentionHir {
    pub attrs: MoeAttentionAttrs,
    pub kv_cache: bool,
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
        let arity = moe_attention_arity(&self.attrs);
        if !self.kv_cache {
            return same_shape_f32_rules(s, inputs, outputs, arity);
        }
        check_input_arity(inputs, arity + 2)?;
        check_output_arity(outputs, 3)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        for out in outputs {
            s.equals(&out.datum_type, f32::datum_type())?;
        }
        for present in &outputs[1..] {
            s.equals(&present.rank, 4)?;
            s.equals(&present.shape[0], &inputs[arity].shape[0])?;
            s.equals(&present.shape[1], &inputs[arity].shape[1])?;
            s.equals(&present.shape[3], &inputs[arity].shape[3])?;
        }
        Ok(())
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(if self.kv_cache { 3 } else { 1 })
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let op = MoEAttentionOp {
            attrs: self.attrs,
            kv_cache: self.kv_cache,
            pos_keys: SharedPosKeys::default(),
        };
        model.wire_node(prefix, op, inputs)
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
