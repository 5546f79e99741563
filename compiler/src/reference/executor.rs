//! The end-to-end forward pass of the pre-LN language model (SPEC.md section 3).

use super::error::in_layer;
use super::layer::{BlockWeights, FfnWeights, Norm};
use super::{ExecError, Memory, Tokens};
use crate::Model;
use crate::config::PosEncodingKind;
use crate::names;
use switchhead_ops::embedding::embedding;
use switchhead_ops::ffn::dense_ffn;
use switchhead_ops::layer_norm::layer_norm;
use switchhead_ops::linear::linear;
use switchhead_ops::moe_attention::moe_attention;
use switchhead_ops::rope::Rope;
use switchhead_ops::router::Routing;
use switchhead_ops::sigma_moe::sigma_moe;
use switchhead_ops::{OpError, Tensor};

/// Routing decisions of one layer for one sequence (each `None` where the layer has no router).
#[derive(Debug, Clone, Default)]
pub struct LayerRouting {
    /// Value router over the key rows (memory + current).
    pub v: Option<Routing>,
    /// Output router over the query rows.
    pub o: Option<Routing>,
    /// σ-MoE router over the query rows.
    pub ffn: Option<Routing>,
}

/// Result of a forward pass.
#[derive(Debug, Clone)]
pub struct Forward {
    /// `[batch, seq, vocab]`.
    pub logits: Tensor,
    /// `routing[b][layer]`.
    pub routing: Vec<Vec<LayerRouting>>,
    /// The memory for the next chunk: this chunk's layer inputs, `[batch, seq, D]` per layer.
    pub memory: Memory,
}

/// A model's weights as f32 tensors, ready to run.
pub struct ReferenceExecutor {
    config: crate::Config,
    embedding: Tensor,
    blocks: Vec<BlockWeights>,
    out_norm: Norm,
    output_w: Tensor,
    output_b: Tensor,
    rope: Option<Rope>,
}

impl ReferenceExecutor {
    /// Reads every weight of `model` once.
    pub fn new(model: &Model) -> Result<Self, ExecError> {
        let (w, c) = (&model.weights, &model.config);
        let rope = match c.pos_encoding {
            PosEncodingKind::Rope => Some(
                Rope::new(c.d_head, c.rotate_fraction, c.rope_base).map_err(in_layer("config"))?,
            ),
            PosEncodingKind::Xl => None,
        };
        let blocks = (0..c.n_layers)
            .map(|i| BlockWeights::load(w, c, i))
            .collect::<Result<_, _>>()?;
        Ok(ReferenceExecutor {
            config: c.clone(),
            embedding: w.tensor(names::EMBEDDING)?,
            blocks,
            out_norm: Norm::load(w, (names::OUT_NORM_W.into(), names::OUT_NORM_B.into()))?,
            output_w: w.tensor(names::OUTPUT_W)?,
            output_b: w.tensor(names::OUTPUT_B)?,
            rope,
        })
    }

    /// An empty memory for `batch` sequences.
    pub fn empty_memory(&self, batch: usize) -> Memory {
        let shape = vec![batch, 0, self.config.d_model];
        Memory {
            layers: (0..self.config.n_layers)
                .map(|_| Tensor::zeros(shape.clone()))
                .collect(),
        }
    }

    /// Runs the model on `tokens`, attending to `memory` (XL models) first.
    pub fn forward(&self, tokens: &Tokens, memory: Option<&Memory>) -> Result<Forward, ExecError> {
        tokens.check_vocab(self.config.vocab_size)?;
        let empty = self.empty_memory(tokens.batch());
        let memory = self.checked_memory(memory, &empty, tokens.batch())?;
        let mut logits = Vec::new();
        let (mut routing, mut layer_inputs) = (Vec::new(), vec![Vec::new(); self.config.n_layers]);
        for b in 0..tokens.batch() {
            let seq = self.sequence(tokens.sequence(b), memory, b)?;
            logits.extend(seq.logits.into_data());
            routing.push(seq.routing);
            layer_inputs
                .iter_mut()
                .zip(seq.inputs)
                .for_each(|(all, x)| all.extend(x.into_data()));
        }
        let (batch, t, d) = (tokens.batch(), tokens.seq(), self.config.d_model);
        let shape = |last| vec![batch, t, last];
        let layers = layer_inputs
            .into_iter()
            .map(|x| Tensor::new(shape(d), x))
            .collect::<Result<_, _>>();
        Ok(Forward {
            logits: Tensor::new(shape(self.config.vocab_size), logits)
                .map_err(in_layer("output"))?,
            routing,
            memory: Memory {
                layers: layers.map_err(in_layer("memory"))?,
            },
        })
    }

    fn checked_memory<'a>(
        &self,
        memory: Option<&'a Memory>,
        empty: &'a Memory,
        batch: usize,
    ) -> Result<&'a Memory, ExecError> {
        let Some(memory) = memory else {
            return Ok(empty);
        };
        if self.config.pos_encoding != PosEncodingKind::Xl && !memory.is_empty() {
            let reason =
                "only XL models take a memory; RoPE models run each input on its own".to_string();
            return Err(ExecError::Memory { reason });
        }
        memory.check(self.config.n_layers, batch, self.config.d_model)?;
        Ok(memory)
    }

    fn sequence(&self, ids: &[i64], memory: &Memory, b: usize) -> Result<SequenceOut, ExecError> {
        let mut x = embedding(&self.embedding, ids).map_err(in_layer("embedding"))?;
        let (mut routing, mut inputs) = (Vec::new(), Vec::new());
        for (i, block) in self.blocks.iter().enumerate() {
            inputs.push(x.clone());
            let (next, r) = self.block(block, x, memory.sequence(i, b)?)?;
            x = next;
            routing.push(r);
        }
        let eps = self.config.layer_norm_eps;
        let h = layer_norm(&x, &self.out_norm.weight, &self.out_norm.bias, eps)
            .map_err(in_layer("out_norm"))?;
        let logits =
            linear(&h, &self.output_w, Some(&self.output_b)).map_err(in_layer("output"))?;
        Ok(SequenceOut {
            logits,
            routing,
            inputs,
        })
    }

    /// `x += attn(LN1(cat(mem, x)))`, then `x += ffn(LN2(x))`.
    fn block(
        &self,
        block: &BlockWeights,
        x: Tensor,
        mem: Tensor,
    ) -> Result<(Tensor, LayerRouting), ExecError> {
        let err = || in_layer(block.name.clone());
        let eps = self.config.layer_norm_eps;
        let kv_in = concat_rows(&mem, &x).map_err(err())?;
        let a_kv = layer_norm(&kv_in, &block.norm1.weight, &block.norm1.bias, eps).map_err(err())?;
        let a_q = last_rows(&a_kv, x.rows()).map_err(err())?;
        let layer = block.attention(&self.config, self.rope.as_ref())?;
        let att = moe_attention(&layer, &a_q, &a_kv).map_err(err())?;
        let x = add(&x, &att.y).map_err(err())?;
        let f = layer_norm(&x, &block.norm2.weight, &block.norm2.bias, eps).map_err(err())?;
        let (y, ffn_routing) = ffn(&block.ffn, &f).map_err(err())?;
        let routing = LayerRouting {
            v: att.sel_v,
            o: att.sel_o,
            ffn: ffn_routing,
        };
        Ok((add(&x, &y).map_err(err())?, routing))
    }
}

struct SequenceOut {
    logits: Tensor,
    routing: Vec<LayerRouting>,
    inputs: Vec<Tensor>,
}

fn ffn(w: &FfnWeights, f: &Tensor) -> Result<(Tensor, Option<Routing>), OpError> {
    match w {
        FfnWeights::Dense { w1, b1, w2, b2 } => Ok((dense_ffn(f, w1, b1, w2, b2)?, None)),
        FfnWeights::SigmaMoe {
            router,
            keys,
            values,
            k,
        } => {
            let (y, r) = sigma_moe(f, router, keys, values, *k)?;
            Ok((y, Some(r)))
        }
    }
}

fn add(a: &Tensor, b: &Tensor) -> Result<Tensor, OpError> {
    b.expect_shape("residual", a.shape())?;
    let data = a.data().iter().zip(b.data()).map(|(x, y)| x + y).collect();
    Tensor::new(a.shape().to_vec(), data)
}

fn concat_rows(a: &Tensor, b: &Tensor) -> Result<Tensor, OpError> {
    let mut data = a.data().to_vec();
    data.extend_from_slice(b.data());
    Tensor::new(vec![a.rows() + b.rows(), b.last_dim()], data)
}

fn last_rows(x: &Tensor, n: usize) -> Result<Tensor, OpError> {
    let d = x.last_dim();
    let start = (x.rows() - n) * d;
    Tensor::new(vec![n, d], x.data()[start..].to_vec())
}
