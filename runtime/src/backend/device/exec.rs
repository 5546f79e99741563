//! One pass of a [`Program`] on a device: a slot per value, steps in order, each
//! intermediate dropped (its buffer freed) after its last use. Everything stays on the
//! device: the tokens go up once, the logits (and XL memory, when the caller asks for it on
//! the host) come down once.

use std::sync::Arc;

use switchhead_kernels::gpu::launch as l;
use switchhead_kernels::gpu::{Device, GpuError};
use switchhead_ops::op::Op;

use super::model::{KvState, Model, RouteTrace};
use super::tensor::{Tensor, project, w, zeros};
use super::weights::DevWeight;
use crate::native::Step;

/// A value of the pass.
pub(crate) enum Value<B> {
    /// The i64 tokens `[batch, seq]`.
    Tokens {
        buf: Arc<B>,
        batch: usize,
        seq: usize,
    },
    Act(Tensor<B>),
}

/// What a pass reads and writes besides its tokens.
pub(crate) struct PassIo<'a, B> {
    /// XL: the memory of every layer, `[batch, mem_len, D]`.
    pub memory: Option<&'a [Tensor<B>]>,
    /// RoPE decoding: the KV cache, appended in place.
    pub kv: Option<&'a mut KvState<B>>,
    /// When set, every router's expert ids are downloaded into it.
    pub trace: Option<&'a mut Vec<RouteTrace>>,
}

/// The pass's outputs, still on the device.
pub(crate) struct PassOut<B> {
    pub logits: Tensor<B>,
    pub memory_out: Vec<Tensor<B>>,
}

pub(crate) struct Pass<'a, 'io, D: Device> {
    pub m: &'a Model<D>,
    slots: Vec<Option<Value<D::Buffer>>>,
    pub io: PassIo<'io, D::Buffer>,
    /// Attention steps run so far (the layer index of the KV cache and the trace).
    pub layer: usize,
}

pub(crate) fn err(e: GpuError) -> String {
    e.to_string()
}

impl<'a, 'io, D: Device> Pass<'a, 'io, D> {
    /// Runs the program on `tokens` (already on the device).
    pub fn run(
        m: &'a Model<D>,
        tokens: Value<D::Buffer>,
        io: PassIo<'io, D::Buffer>,
    ) -> Result<PassOut<D::Buffer>, String> {
        let p = &m.program;
        let mut pass = Pass {
            m,
            slots: (0..p.n_values).map(|_| None).collect(),
            io,
            layer: 0,
        };
        pass.slots[p.tokens] = Some(tokens);
        pass.bind_memory()?;
        for (i, step) in p.steps.iter().enumerate() {
            let out = pass
                .step(i, step)
                .map_err(|e| format!("node {:?} ({}): {e}", step.name, step.op.name()))?;
            pass.slots[step.output] = Some(Value::Act(out));
            for &v in &step.free {
                pass.slots[v] = None;
            }
        }
        let logits = pass.act(p.logits)?.clone();
        let memory_out = p
            .memory_out
            .iter()
            .map(|&v| pass.act(v).cloned())
            .collect::<Result<_, _>>()?;
        Ok(PassOut { logits, memory_out })
    }

    fn bind_memory(&mut self) -> Result<(), String> {
        let ids = &self.m.program.memory;
        if ids.is_empty() {
            return Ok(());
        }
        let mem = self.io.memory.ok_or("this XL plan needs memory inputs")?;
        if mem.len() != ids.len() {
            return Err(format!(
                "{} memory layers for {} inputs",
                mem.len(),
                ids.len()
            ));
        }
        for (&v, t) in ids.iter().zip(mem) {
            self.slots[v] = Some(Value::Act(t.clone()));
        }
        Ok(())
    }

    /// The activation in value `v`.
    pub fn act(&self, v: usize) -> Result<&Tensor<D::Buffer>, String> {
        match &self.slots[v] {
            Some(Value::Act(t)) => Ok(t),
            _ => Err(format!("value {v} is not an activation here")),
        }
    }

    /// The weight bound to value `v`.
    pub fn weight(&self, v: usize) -> Result<&'a DevWeight<D::Buffer>, String> {
        let i = self.m.program.weight_of[v].ok_or_else(|| format!("value {v} is not a weight"))?;
        Ok(&self.m.weights.weights[i])
    }

    fn step(&mut self, index: usize, s: &Step) -> Result<Tensor<D::Buffer>, String> {
        let dev = &self.m.dev;
        let x = |i: usize| s.inputs[i];
        match &s.op {
            Op::Embedding => self.embedding(x(0), x(1)),
            Op::LayerNorm { eps } => {
                let a = self.act(x(0))?;
                let y = zeros(dev, a.shape.clone()).map_err(err)?;
                let (g, b) = (self.weight(x(1))?, self.weight(x(2))?);
                let dims = (a.rows(), a.last());
                l::layer_norm(dev, &a.buf, (w(g), w(b)), &y.buf, dims, *eps as f32).map_err(err)?;
                Ok(y)
            }
            Op::Linear { bias } => {
                let b = bias.then(|| s.inputs.get(2).copied()).flatten();
                self.linear(self.act(x(0))?, x(1), b, false)
            }
            Op::Add => {
                let y = self.reuse_or_copy(s, 0)?;
                let b = self.act(x(1))?;
                l::add_inplace(dev, &y.buf, &b.buf, y.len().min(b.len())).map_err(err)?;
                Ok(y)
            }
            Op::Relu => {
                let y = self.reuse_or_copy(s, 0)?;
                l::bias_act(dev, &y.buf, None, (y.rows(), y.last()), true).map_err(err)?;
                Ok(y)
            }
            Op::Softmax { .. } => {
                let y = self.copy(self.act(x(0))?)?;
                l::softmax_rows(dev, &y.buf, y.rows(), y.last()).map_err(err)?;
                Ok(y)
            }
            Op::ConcatSeq => self.concat(x(0), x(1)),
            Op::DenseFfn => {
                let h = self.linear(self.act(x(0))?, x(1), Some(x(2)), true)?;
                self.linear(&h, x(3), Some(x(4)), false)
            }
            Op::MoEAttention(a) => super::attention::run(self, index, s, a),
            Op::SigmaMoe(a) => super::moe::sigma_moe(self, s, a),
        }
    }

    fn embedding(&self, tokens: usize, table: usize) -> Result<Tensor<D::Buffer>, String> {
        let Some(Value::Tokens { buf, batch, seq }) = &self.slots[tokens] else {
            return Err("Embedding expects the tokens input".into());
        };
        let t = self.weight(table)?;
        let [vocab, d] = t.shape[..] else {
            return Err(format!("embedding table shape {:?} is not [V, D]", t.shape));
        };
        let y = zeros(&self.m.dev, vec![*batch, *seq, d]).map_err(err)?;
        l::embedding(&self.m.dev, buf, w(t), &y.buf, (batch * seq, d, vocab)).map_err(err)?;
        Ok(y)
    }

    /// `x @ W^T (+ bias)`, then relu if asked.
    fn linear(
        &self,
        x: &Tensor<D::Buffer>,
        weight: usize,
        bias: Option<usize>,
        relu: bool,
    ) -> Result<Tensor<D::Buffer>, String> {
        let dev = &self.m.dev;
        let y = project(dev, x, self.weight(weight)?, 1.0).map_err(err)?;
        let b = bias.map(|b| self.weight(b)).transpose()?;
        if b.is_some() || relu {
            l::bias_act(dev, &y.buf, b.map(w), (y.rows(), y.last()), relu).map_err(err)?;
        }
        Ok(y)
    }

    /// Input `i` of step `s` to compute into: taken over when this step is its last use, no
    /// other input is the same value and nothing else holds its buffer (the residual Adds);
    /// else a copy.
    fn reuse_or_copy(&mut self, s: &Step, i: usize) -> Result<Tensor<D::Buffer>, String> {
        let v = s.inputs[i];
        let only_here = s.inputs.iter().filter(|&&u| u == v).count() == 1;
        let unshared = |val: &mut Value<D::Buffer>| matches!(val, Value::Act(t) if Arc::strong_count(&t.buf) == 1);
        if s.free.contains(&v)
            && only_here
            && let Some(Value::Act(t)) = self.slots[v].take_if(unshared)
        {
            return Ok(t);
        }
        self.copy(self.act(v)?)
    }

    fn copy(&self, a: &Tensor<D::Buffer>) -> Result<Tensor<D::Buffer>, String> {
        let y = zeros(&self.m.dev, a.shape.clone()).map_err(err)?;
        self.m
            .dev
            .copy(&a.buf, 0, &y.buf, 0, a.len() * 4)
            .map_err(err)?;
        Ok(y)
    }

    fn concat(&self, a: usize, b: usize) -> Result<Tensor<D::Buffer>, String> {
        let (a, b) = (self.act(a)?, self.act(b)?);
        let ([ba, m, da], [bb, t, db]) = (&a.shape[..], &b.shape[..]) else {
            return Err(format!(
                "ConcatSeq expects rank-3 operands, got {:?} and {:?}",
                a.shape, b.shape
            ));
        };
        if ba != bb || da != db {
            return Err(format!(
                "ConcatSeq operands {:?} and {:?} differ",
                a.shape, b.shape
            ));
        }
        let y = zeros(&self.m.dev, vec![*ba, m + t, *da]).map_err(err)?;
        l::concat_seq(&self.m.dev, (&a.buf, &b.buf), &y.buf, (*ba, *m, *t, *da)).map_err(err)?;
        Ok(y)
    }
}
