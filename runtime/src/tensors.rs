//! The values that cross the session API: token batches, logits and XL memory.

use crate::RuntimeError;

/// Token ids `[batch, seq]`, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    pub batch: usize,
    pub seq: usize,
    pub tokens: Vec<i64>,
}

impl TokenBatch {
    /// Wraps `tokens` as `[batch, seq]`; errors if the count differs.
    pub fn new(batch: usize, seq: usize, tokens: Vec<i64>) -> Result<Self, RuntimeError> {
        let tb = TokenBatch { batch, seq, tokens };
        tb.check_len()?;
        Ok(tb)
    }

    /// One sequence.
    pub fn single(tokens: Vec<i64>) -> Self {
        TokenBatch {
            batch: 1,
            seq: tokens.len(),
            tokens,
        }
    }

    pub(crate) fn check_len(&self) -> Result<(), RuntimeError> {
        if self.batch.checked_mul(self.seq) == Some(self.tokens.len()) {
            return Ok(());
        }
        Err(RuntimeError::ShapeMismatch {
            tensor: "tokens".into(),
            expected: format!(
                "[{}, {}] ({} ids)",
                self.batch,
                self.seq,
                self.batch * self.seq
            ),
            got: format!("{} ids", self.tokens.len()),
        })
    }
}

/// Logits `[batch, seq, vocab]`, row-major f32.
#[derive(Debug, Clone, PartialEq)]
pub struct Logits {
    pub batch: usize,
    pub seq: usize,
    pub vocab: usize,
    pub data: Vec<f32>,
}

impl Logits {
    /// The vocabulary scores of sequence `b`, position `t` (None when out of range).
    pub fn row(&self, b: usize, t: usize) -> Option<&[f32]> {
        if b >= self.batch || t >= self.seq {
            return None;
        }
        let at = (b * self.seq + t) * self.vocab;
        self.data.get(at..at + self.vocab)
    }
}

/// Transformer-XL memory: per layer, the previous chunk's layer inputs `[batch, mem_len, D]`.
#[derive(Debug, Clone, PartialEq)]
pub struct XlMemory {
    pub batch: usize,
    pub mem_len: usize,
    pub d_model: usize,
    /// One `[batch, mem_len, d_model]` tensor per layer.
    pub layers: Vec<Vec<f32>>,
}

impl XlMemory {
    /// Empty memory (mem_len 0) for `layers` layers.
    pub fn empty(batch: usize, d_model: usize, layers: usize) -> Self {
        XlMemory {
            batch,
            mem_len: 0,
            d_model,
            layers: vec![Vec::new(); layers],
        }
    }
}

/// The KV cache of a RoPE model: per layer, keys (scaled by dh^-0.25, rotated at their
/// absolute positions) and values (after the expert mixture), each `[batch, heads, past,
/// d_head]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct KvCache {
    pub batch: usize,
    pub heads: usize,
    pub past: usize,
    pub d_head: usize,
    /// `(key, value)` per layer.
    pub layers: Vec<(Vec<f32>, Vec<f32>)>,
}

impl KvCache {
    /// An empty cache (past 0).
    pub fn empty(batch: usize, heads: usize, d_head: usize, layers: usize) -> Self {
        KvCache {
            batch,
            heads,
            past: 0,
            d_head,
            layers: vec![(Vec::new(), Vec::new()); layers],
        }
    }
}

impl XlMemory {
    /// `self` followed by `next` along the sequence axis, keeping the last `keep` rows.
    pub fn append(&self, next: &XlMemory, keep: usize) -> XlMemory {
        let (d, total) = (self.d_model, self.mem_len + next.mem_len);
        let keep = keep.min(total);
        let skip = total - keep;
        let layers = self
            .layers
            .iter()
            .zip(&next.layers)
            .map(|(a, b)| {
                let mut out = Vec::with_capacity(self.batch * keep * d);
                for row in 0..self.batch {
                    let rows = a[row * self.mem_len * d..(row + 1) * self.mem_len * d]
                        .chunks_exact(d.max(1))
                        .chain(
                            b[row * next.mem_len * d..(row + 1) * next.mem_len * d]
                                .chunks_exact(d.max(1)),
                        );
                    rows.skip(skip).for_each(|r| out.extend_from_slice(r));
                }
                out
            })
            .collect();
        XlMemory {
            batch: self.batch,
            mem_len: keep,
            d_model: d,
            layers,
        }
    }
}
