//! Standard-op (opset 17) decompositions of every IR op, one file per op. No control flow
//! (Loop/Scan/If); batch and sequence lengths stay symbolic. Tensors are `[B, T, ..]` rank 3
//! where the op contract says `[.., D]` (the IR only produces rank-3 activations).

mod add;
mod common;
mod concat_seq;
mod dense_ffn;
mod embedding;
mod layer_norm;
mod linear;
mod moe_attention;
mod positions;
mod relu;
mod router;
mod sigma_moe;
mod softmax;

use switchhead_ops::op::Op;

use super::builder::Builder;
use super::emit::EmitError;

/// How routed experts (MoEAttention's value and output experts, SigmaMoE) are decomposed.
/// Both are exact; they differ in work and memory traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpertForm {
    /// Every expert of every token with plain MatMuls over the stacked weights, weighted by the
    /// top-k gates scattered into a dense `[.., E]` gate tensor (zeros elsewhere): E/k times the
    /// needed expert FLOPs, but large dense GEMMs.
    #[default]
    Dense,
    /// Only the k selected experts: `Gather` the selected expert matrices per token
    /// (`[B, L, G, k, rows, cols]`), a batched vector-matrix MatMul per (token, slot), then the
    /// gate-weighted sum over the k slots. The needed FLOPs only, but each token reads its own
    /// k matrices (memory-bound, and the gathered copy is `k*rows*cols` floats per token and
    /// group).
    Gather,
}

/// Static facts a decomposition needs beyond the op's attributes.
#[derive(Debug, Clone, Copy)]
pub struct OpContext {
    /// Model width D (the XL sinusoid needs it statically).
    pub d_model: usize,
    /// Formulation of the routed experts.
    pub experts: ExpertForm,
}

/// Appends the decomposition of `op` on `inputs` to `b`; returns the output value name.
pub fn decompose(
    b: &mut Builder,
    op: &Op,
    inputs: &[&str],
    ctx: OpContext,
) -> Result<String, EmitError> {
    if inputs.len() != op.arity() {
        return Err(EmitError::Unsupported {
            op: op.name().into(),
            reason: format!("{} inputs, the op takes {}", inputs.len(), op.arity()),
        });
    }
    Ok(match op {
        Op::Embedding => embedding::embedding(b, inputs),
        Op::LayerNorm { eps } => layer_norm::layer_norm(b, inputs, *eps),
        Op::Linear { bias } => linear::linear(b, inputs, *bias),
        Op::Add => add::add(b, inputs),
        Op::Relu => relu::relu(b, inputs),
        Op::Softmax { axis } => softmax::softmax(b, inputs, *axis),
        Op::ConcatSeq => concat_seq::concat_seq(b, inputs),
        Op::DenseFfn => dense_ffn::dense_ffn(b, inputs),
        Op::MoEAttention(a) => moe_attention::moe_attention(b, a, inputs, ctx)?,
        Op::SigmaMoe(a) => sigma_moe::sigma_moe(b, a, inputs, ctx.experts),
    })
}

/// The KV-cache form of a RoPE `MoEAttention`: `inputs` are the op's inputs followed by the
/// past key and value `[B, H, P, dh]`; returns `(y, present_key, present_value)` (see
/// `moe_attention`'s module doc). Any other op, or an XL one, is unsupported.
pub fn decompose_attention_kv(
    b: &mut Builder,
    op: &Op,
    inputs: &[&str],
    ctx: OpContext,
) -> Result<(String, String, String), EmitError> {
    let Op::MoEAttention(a) = op else {
        return Err(EmitError::Unsupported {
            op: op.name().into(),
            reason: "only MoEAttention has a KV-cache form".into(),
        });
    };
    let n = op.arity();
    if inputs.len() != n + 2 {
        return Err(EmitError::Unsupported {
            op: op.name().into(),
            reason: format!("{} inputs, the KV-cache form takes {}", inputs.len(), n + 2),
        });
    }
    moe_attention::moe_attention_kv(b, a, &inputs[..n], (inputs[n], inputs[n + 1]), ctx)
}
