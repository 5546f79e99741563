//! Inputs and state of a forward pass: a token batch and the per-layer XL memory.

use super::ExecError;
use switchhead_ops::Tensor;

/// A batch of token sequences of equal length, `[batch, seq]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Tokens {
    batch: usize,
    seq: usize,
    ids: Vec<i64>,
}

impl Tokens {
    /// Wraps `ids` as `[batch, seq]`; errors if empty or if the count differs.
    pub fn new(batch: usize, seq: usize, ids: Vec<i64>) -> Result<Self, ExecError> {
        if batch == 0 || seq == 0 {
            return Err(ExecError::EmptyInput {
                what: format!("token shape [{batch}, {seq}]"),
            });
        }
        if ids.len() != batch * seq {
            let reason = format!("{} ids do not fill [{batch}, {seq}]", ids.len());
            return Err(ExecError::Tokens { reason });
        }
        Ok(Tokens { batch, seq, ids })
    }

    /// Number of sequences.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Length of each sequence.
    pub fn seq(&self) -> usize {
        self.seq
    }

    /// Sequence `b`.
    pub fn sequence(&self, b: usize) -> &[i64] {
        &self.ids[b * self.seq..(b + 1) * self.seq]
    }

    /// Checks every id against the vocabulary size.
    pub fn check_vocab(&self, vocab: usize) -> Result<(), ExecError> {
        for (i, &id) in self.ids.iter().enumerate() {
            if id < 0 || id as u64 >= vocab as u64 {
                let (batch, position) = (i / self.seq, i % self.seq);
                return Err(ExecError::TokenOutOfRange {
                    id,
                    batch,
                    position,
                    vocab,
                });
            }
        }
        Ok(())
    }
}

/// Transformer-XL memory: per layer, the previous chunk's layer inputs `[batch, M, D]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Memory {
    /// One tensor per layer.
    pub layers: Vec<Tensor>,
}

impl Memory {
    /// Memory length M (0 for an empty memory).
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|t| t.shape().get(1).copied())
            .unwrap_or(0)
    }

    /// True when it holds no positions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks the memory against a model of `n_layers` layers, width `d`, and a batch size.
    pub fn check(&self, n_layers: usize, batch: usize, d: usize) -> Result<(), ExecError> {
        if self.layers.len() != n_layers {
            let reason = format!(
                "{} layers of memory for a model of {n_layers} layers",
                self.layers.len()
            );
            return Err(ExecError::Memory { reason });
        }
        let m = self.len();
        for (i, t) in self.layers.iter().enumerate() {
            if t.shape() != [batch, m, d] {
                let reason = format!(
                    "layer {i}: expected shape [{batch}, {m}, {d}], got {:?}",
                    t.shape()
                );
                return Err(ExecError::Memory { reason });
            }
        }
        Ok(())
    }

    /// Rows of sequence `b` in layer `layer`, as `[M, D]`.
    pub fn sequence(&self, layer: usize, b: usize) -> Result<Tensor, ExecError> {
        let t = &self.layers[layer];
        let (m, d) = (t.shape()[1], t.shape()[2]);
        let rows = t.data()[b * m * d..(b + 1) * m * d].to_vec();
        Tensor::new(vec![m, d], rows).map_err(|e| ExecError::Memory {
            reason: e.to_string(),
        })
    }
}
