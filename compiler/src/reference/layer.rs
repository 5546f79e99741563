//! One transformer block's weights, read from the model as f32 tensors.

use super::ExecError;
use super::error::in_layer;
use crate::config::{AttentionKind, Config, FfnKind, PosEncodingKind};
use crate::model::Weights;
use crate::names::LayerNames;
use switchhead_ops::Tensor;
use switchhead_ops::moe_attention::{AttentionLayer, Positions, ValueOutput};
use switchhead_ops::rope::Rope;

/// A LayerNorm's affine parameters.
pub(crate) struct Norm {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl Norm {
    pub fn load(w: &Weights, (weight, bias): (String, String)) -> Result<Self, ExecError> {
        Ok(Norm {
            weight: w.tensor(&weight)?,
            bias: w.tensor(&bias)?,
        })
    }
}

/// The value / output side of the attention, by variant.
enum ValueOutputWeights {
    Experts {
        v: Tensor,
        o: Tensor,
        sel_v: Tensor,
        sel_o: Tensor,
    },
    Gated {
        v: Tensor,
        o: Tensor,
        sel_o: Tensor,
    },
    Dense {
        v: Tensor,
        o: Tensor,
    },
}

/// The feed-forward block, by variant.
pub(crate) enum FfnWeights {
    Dense {
        w1: Tensor,
        b1: Tensor,
        w2: Tensor,
        b2: Tensor,
    },
    SigmaMoe {
        router: Tensor,
        keys: Tensor,
        values: Tensor,
        k: usize,
    },
}

/// Everything one block needs.
pub(crate) struct BlockWeights {
    pub name: String,
    pub norm1: Norm,
    pub norm2: Norm,
    q: Tensor,
    k: Tensor,
    value_output: ValueOutputWeights,
    pos_to_pk: Option<Tensor>,
    pub ffn: FfnWeights,
}

impl BlockWeights {
    /// Reads block `i` of a model with config `c`.
    pub fn load(w: &Weights, c: &Config, i: usize) -> Result<Self, ExecError> {
        let n = LayerNames::new(i);
        let pos_to_pk = match c.pos_encoding {
            PosEncodingKind::Xl => Some(w.tensor(&n.pos_to_pk())?),
            PosEncodingKind::Rope => None,
        };
        Ok(BlockWeights {
            name: format!("unique_layers.{i}"),
            norm1: Norm::load(w, n.norm1())?,
            norm2: Norm::load(w, n.norm2())?,
            q: w.tensor(&n.proj('q'))?,
            k: w.tensor(&n.proj('k'))?,
            value_output: load_value_output(w, c, &n)?,
            pos_to_pk,
            ffn: load_ffn(w, c, &n)?,
        })
    }

    /// The attention layer as the reference op takes it.
    pub fn attention<'a>(
        &'a self,
        c: &Config,
        rope: Option<&'a Rope>,
    ) -> Result<AttentionLayer<'a>, ExecError> {
        let positions = match (&self.pos_to_pk, rope) {
            (Some(pos_to_pk), _) => Positions::Xl { pos_to_pk },
            (None, Some(rope)) => Positions::Rope(rope),
            (None, None) => {
                let reason = "a RoPE layer needs its rotary table".to_string();
                let source = switchhead_ops::OpError::Attribute {
                    op: "MoEAttention",
                    attr: "positions",
                    reason,
                };
                return Err(in_layer(self.name.clone())(source));
            }
        };
        let value_output = match &self.value_output {
            ValueOutputWeights::Experts { v, o, sel_v, sel_o } => ValueOutput::Experts {
                v,
                o,
                sel_v,
                sel_o,
                k: c.moe_k,
            },
            ValueOutputWeights::Gated { v, o, sel_o } => ValueOutput::Gated { v, o, sel_o },
            ValueOutputWeights::Dense { v, o } => ValueOutput::Dense { v, o },
        };
        Ok(AttentionLayer {
            heads: c.n_heads,
            d_head: c.d_head,
            q: &self.q,
            k: &self.k,
            value_output,
            positions,
        })
    }
}

fn load_value_output(
    w: &Weights,
    c: &Config,
    n: &LayerNames,
) -> Result<ValueOutputWeights, ExecError> {
    let (v, o) = (w.tensor(&n.proj('v'))?, w.tensor(&n.proj('o'))?);
    Ok(match (c.attention, c.n_experts) {
        (AttentionKind::Dense, _) => ValueOutputWeights::Dense { v, o },
        (AttentionKind::Switchhead, 1) => ValueOutputWeights::Gated {
            v,
            o,
            sel_o: w.tensor(&n.sel('o'))?,
        },
        (AttentionKind::Switchhead, _) => ValueOutputWeights::Experts {
            v,
            o,
            sel_v: w.tensor(&n.sel('v'))?,
            sel_o: w.tensor(&n.sel('o'))?,
        },
    })
}

fn load_ffn(w: &Weights, c: &Config, n: &LayerNames) -> Result<FfnWeights, ExecError> {
    Ok(match c.ffn {
        FfnKind::Dense => {
            let ((w1, b1), (w2, b2)) = (n.linear1(), n.linear2());
            FfnWeights::Dense {
                w1: w.tensor(&w1)?,
                b1: w.tensor(&b1)?,
                w2: w.tensor(&w2)?,
                b2: w.tensor(&b2)?,
            }
        }
        FfnKind::SigmaMoe => FfnWeights::SigmaMoe {
            router: w.tensor(&n.moe_sel())?,
            keys: w.tensor(&n.moe_keys())?,
            values: w.tensor(&n.moe_values())?,
            k: c.ffn_k.unwrap_or(1),
        },
    })
}
