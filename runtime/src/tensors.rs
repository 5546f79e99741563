//! The values that cross the session API: token batches, logits and XL memory.

use std::borrow::Cow;

use crate::RuntimeError;
use crate::info::KvShape;

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
/// absolute positions) and values (after the expert mixture), each `[batch, heads,
/// capacity, d_head]` row-major, of which rows `0..past` of each (batch row, head) are held;
/// the rest is room that a decoding step appends to in place.
#[derive(Debug, Clone, PartialEq)]
pub struct KvCache {
    pub batch: usize,
    pub heads: usize,
    pub past: usize,
    pub d_head: usize,
    /// Rows per (batch row, head) the layers have room for (at least `past`).
    pub capacity: usize,
    /// `(key, value)` per layer.
    pub layers: Vec<(Vec<f32>, Vec<f32>)>,
}

/// Rows per (batch row, head) a growing cache makes room for at least.
const MIN_CAPACITY: usize = 64;

impl KvCache {
    /// An empty cache (past 0, no room yet).
    pub fn empty(batch: usize, heads: usize, d_head: usize, layers: usize) -> Self {
        KvCache {
            batch,
            heads,
            past: 0,
            d_head,
            capacity: 0,
            layers: vec![(Vec::new(), Vec::new()); layers],
        }
    }

    /// Checks that the cache fits `model` and every layer holds `[batch, heads, capacity,
    /// d_head]` with `past <= capacity` (the fields are public: a cache built by hand is
    /// checked before use).
    pub(crate) fn check(&self, model: &KvShape) -> Result<(), RuntimeError> {
        let bad = |reason: String| Err(RuntimeError::Interface { reason });
        if (self.heads, self.d_head, self.layers.len()) != (model.heads, model.d_head, model.layers)
        {
            return bad(format!(
                "the KV cache has {} layers of {} heads of {}, the model {} of {} of {}",
                self.layers.len(),
                self.heads,
                self.d_head,
                model.layers,
                model.heads,
                model.d_head
            ));
        }
        if self.past > self.capacity {
            return bad(format!(
                "the KV cache holds {} rows but has room for {}",
                self.past, self.capacity
            ));
        }
        let len = self.batch * self.heads * self.capacity * self.d_head;
        match self
            .layers
            .iter()
            .position(|(k, v)| k.len() != len || v.len() != len)
        {
            Some(i) => bad(format!(
                "KV cache layer {i}: expected {len} floats per key and value ([{}, {}, {}, {}])",
                self.batch, self.heads, self.capacity, self.d_head
            )),
            None => Ok(()),
        }
    }

    /// Makes room for `more` rows: when they do not fit, the capacity at least doubles
    /// (each growth copies what is held once; the steps in between append in place).
    pub fn reserve(&mut self, more: usize) {
        let need = self.past + more;
        if need <= self.capacity {
            return;
        }
        let to = need.max(2 * self.capacity).max(MIN_CAPACITY);
        self.regrow(to);
    }

    /// Layer `layer`'s key (`value` false) or value in the compact `[batch, heads, past,
    /// d_head]` form (borrowed when the cache has no spare room).
    pub fn compact_layer(&self, layer: usize, value: bool) -> Option<Cow<'_, [f32]>> {
        let (k, v) = self.layers.get(layer)?;
        let data = if value { v } else { k };
        Some(match self.capacity == self.past {
            true => Cow::Borrowed(data),
            false => Cow::Owned(self.resized(data, self.past)),
        })
    }

    /// The cache with its spare room dropped (every layer `[batch, heads, past, d_head]`).
    pub fn compacted(mut self) -> KvCache {
        self.regrow(self.past);
        self
    }

    fn regrow(&mut self, to: usize) {
        if to == self.capacity {
            return;
        }
        let layers = std::mem::take(&mut self.layers);
        self.layers = layers
            .iter()
            .map(|(k, v)| (self.resized(k, to), self.resized(v, to)))
            .collect();
        self.capacity = to;
    }

    /// One layer's tensor with `to` rows per (batch row, head).
    fn resized(&self, data: &[f32], to: usize) -> Vec<f32> {
        let blocks = self.batch * self.heads;
        let from = self.capacity;
        switchhead_kernels::kv_with_capacity(data, blocks, (self.past, from), to, self.d_head)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache of `past` rows (2 batch rows, 3 heads, d_head 2) whose values name their
    /// position: block * 100 + row * 10 + lane.
    fn cache(past: usize) -> KvCache {
        let data: Vec<f32> = (0..6)
            .flat_map(|b| {
                (0..past).flat_map(move |r| (0..2).map(move |l| (b * 100 + r * 10 + l) as f32))
            })
            .collect();
        KvCache {
            batch: 2,
            heads: 3,
            past,
            d_head: 2,
            capacity: past,
            layers: vec![(data.clone(), data.iter().map(|v| -v).collect())],
        }
    }

    #[test]
    fn reserve_grows_in_place_room_and_keeps_the_rows() {
        let want = cache(5);
        let mut c = want.clone();
        c.reserve(1);
        assert_eq!(c.capacity, MIN_CAPACITY, "the first growth");
        assert_eq!(c.layers[0].0.len(), 6 * MIN_CAPACITY * 2);
        assert_eq!(
            c.layers[0].0[MIN_CAPACITY * 2],
            100.0,
            "block 1 starts a capacity later"
        );
        c.reserve(MIN_CAPACITY - 5);
        assert_eq!(c.capacity, MIN_CAPACITY, "fits: no growth");
        c.past = MIN_CAPACITY;
        c.reserve(1);
        assert_eq!(c.capacity, 2 * MIN_CAPACITY, "doubles");
        c.past = 5;
        let (k, v) = (c.compact_layer(0, false), c.compact_layer(0, true));
        let (k, v) = (k.expect("layer 0 key"), v.expect("layer 0 value"));
        assert_eq!((&*k, &*v), (&want.layers[0].0[..], &want.layers[0].1[..]));
        assert_eq!(c.compacted(), want);
    }

    #[test]
    fn check_names_what_does_not_fit() {
        let model = KvShape {
            layers: 1,
            heads: 3,
            d_head: 2,
        };
        assert!(cache(4).check(&model).is_ok());
        let mut short = cache(4);
        short.layers[0].1.pop();
        let err = short.check(&model).expect_err("short layer").to_string();
        assert!(
            err.contains("KV cache layer 0") && err.contains("48"),
            "{err}"
        );
        let mut over = cache(4);
        over.past = 9;
        let err = over
            .check(&model)
            .expect_err("past beyond room")
            .to_string();
        assert!(err.contains("room for 4"), "{err}");
        let other = KvShape { heads: 4, ..model };
        assert!(cache(4).check(&other).is_err(), "heads differ");
    }
}
