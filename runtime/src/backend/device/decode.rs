//! Decoding with the state on the device: a RoPE model's KV cache (spare capacity, new rows
//! appended in place, doubled when full) or an XL model's memory (the previous chunk's layer
//! inputs and the current chunk's so far, joined on the device). Each step uploads its
//! tokens and downloads its logits, nothing else.

use switchhead_kernels::gpu::launch as l;
use switchhead_kernels::gpu::{Device, GpuError, download_f32};

use super::exec::PassIo;
use super::model::KvState;
use super::tensor::{Tensor, zeros};
use super::{DeviceBackend, gpu};
use crate::backend::ResidentDecoder;
use crate::{RuntimeError, TokenBatch};

/// Rows per batch row a new KV cache holds before it first grows.
const INITIAL_CAPACITY: usize = 256;

/// The decoder for `backend`'s model: XL memory or a KV cache.
pub(crate) fn open<D: Device>(
    backend: &DeviceBackend<D>,
    batch: usize,
) -> Result<Box<dyn ResidentDecoder + '_>, RuntimeError> {
    let info = &backend.info;
    if info.is_xl() {
        let chunk = info
            .chunk_size
            .filter(|&c| c > 0)
            .ok_or_else(|| RuntimeError::Interface {
                reason: "an XL plan without a chunk size cannot decode".into(),
            })?;
        return Ok(Box::new(XlDecoder {
            backend,
            batch,
            chunk,
            previous: None,
            current: None,
        }));
    }
    let kv = info.kv.ok_or_else(|| RuntimeError::Interface {
        reason: "this plan has neither XL memory nor RoPE attention to cache".into(),
    })?;
    let capacity = info.chunk_size.unwrap_or(INITIAL_CAPACITY).max(1);
    let dims = (kv.layers, batch, kv.heads * kv.d_head);
    let state = KvState::new(&backend.model.dev, dims, capacity).map_err(gpu(backend.api()))?;
    Ok(Box::new(KvDecoder { backend, state }))
}

#[derive(Debug)]
struct KvDecoder<'b, D: Device> {
    backend: &'b DeviceBackend<D>,
    state: KvState<D::Buffer>,
}

impl<D: Device> KvDecoder<'_, D> {
    /// Doubles the capacity (copying what is held) until `more` rows fit.
    fn reserve(&mut self, more: usize) -> Result<(), GpuError> {
        let s = &mut self.state;
        if s.len + more <= s.capacity {
            return Ok(());
        }
        let mut capacity = s.capacity.max(1);
        while s.len + more > capacity {
            capacity *= 2;
        }
        let dev = &self.backend.model.dev;
        let mut grown = KvState::new(dev, (s.layers.len(), s.batch, s.hd), capacity)?;
        let row = s.hd * 4;
        for ((k, v), (gk, gv)) in s.layers.iter().zip(&grown.layers) {
            for b in 0..s.batch {
                let (from, to) = (b * s.capacity * row, b * capacity * row);
                dev.copy(k, from, gk, to, s.len * row)?;
                dev.copy(v, from, gv, to, s.len * row)?;
            }
        }
        grown.len = s.len;
        *s = grown;
        Ok(())
    }
}

impl<D: Device> ResidentDecoder for KvDecoder<'_, D> {
    fn past(&self) -> usize {
        self.state.len
    }

    fn step(&mut self, tokens: &TokenBatch) -> Result<Vec<f32>, RuntimeError> {
        let api = self.backend.api();
        self.reserve(tokens.seq).map_err(gpu(api))?;
        let io = PassIo {
            memory: None,
            kv: Some(&mut self.state),
            trace: None,
        };
        let out = self.backend.pass(tokens, io)?;
        self.state.len += tokens.seq;
        let logits = &out.logits;
        download_f32(&self.backend.model.dev, &logits.buf, 0, logits.len()).map_err(gpu(api))
    }

    fn reset(&mut self) {
        self.state.len = 0;
    }
}

#[derive(Debug)]
struct XlDecoder<'b, D: Device> {
    backend: &'b DeviceBackend<D>,
    batch: usize,
    chunk: usize,
    /// The last full chunk's layer inputs, per layer `[batch, m, D]`.
    previous: Option<Vec<Tensor<D::Buffer>>>,
    /// The current chunk's so far.
    current: Option<Vec<Tensor<D::Buffer>>>,
}

impl<D: Device> XlDecoder<'_, D> {
    fn held(&self, part: &Option<Vec<Tensor<D::Buffer>>>) -> usize {
        part.as_ref()
            .and_then(|p| p.first())
            .map_or(0, |t| t.shape[1])
    }

    /// `a` followed by `b` along the sequence, per layer (either may be absent).
    fn join(
        &self,
        a: Option<&[Tensor<D::Buffer>]>,
        b: Option<&[Tensor<D::Buffer>]>,
    ) -> Result<Vec<Tensor<D::Buffer>>, GpuError> {
        let dev = &self.backend.model.dev;
        let (d, layers) = (self.backend.info.d_model, self.backend.info.memory_layers);
        let empty = || zeros(dev, vec![self.batch, 0, d]);
        (0..layers)
            .map(|i| match (a.map(|a| &a[i]), b.map(|b| &b[i])) {
                (Some(x), None) | (None, Some(x)) => Ok(x.clone()),
                (None, None) => empty(),
                (Some(x), Some(y)) => {
                    let (m, t) = (x.shape[1], y.shape[1]);
                    let out = zeros(dev, vec![self.batch, m + t, d])?;
                    l::concat_seq(dev, (&x.buf, &y.buf), &out.buf, (self.batch, m, t, d))?;
                    Ok(out)
                }
            })
            .collect()
    }

    /// One piece that fits the current chunk: logits, and its layer inputs joined to it.
    fn piece(&mut self, tokens: &TokenBatch) -> Result<Vec<f32>, RuntimeError> {
        let api = self.backend.api();
        let memory = self
            .join(self.previous.as_deref(), self.current.as_deref())
            .map_err(gpu(api))?;
        let io = PassIo {
            memory: Some(&memory),
            kv: None,
            trace: None,
        };
        let out = self.backend.pass(tokens, io)?;
        let current = self
            .join(self.current.as_deref(), Some(&out.memory_out))
            .map_err(gpu(api))?;
        self.current = Some(current);
        if self.held(&self.current) == self.chunk {
            self.previous = self.current.take();
        }
        let logits = &out.logits;
        download_f32(&self.backend.model.dev, &logits.buf, 0, logits.len()).map_err(gpu(api))
    }
}

impl<D: Device> ResidentDecoder for XlDecoder<'_, D> {
    fn past(&self) -> usize {
        self.held(&self.previous) + self.held(&self.current)
    }

    fn step(&mut self, tokens: &TokenBatch) -> Result<Vec<f32>, RuntimeError> {
        let (vocab, batch) = (self.backend.info.vocab_size, tokens.batch);
        let mut rows: Vec<Vec<f32>> = vec![Vec::new(); batch];
        let mut at = 0;
        while at < tokens.seq {
            let n = (self.chunk - self.held(&self.current)).min(tokens.seq - at);
            let piece = slice(tokens, at, n);
            let logits = self.piece(&piece)?;
            for (b, row) in rows.iter_mut().enumerate() {
                row.extend_from_slice(&logits[b * n * vocab..(b + 1) * n * vocab]);
            }
            at += n;
        }
        Ok(rows.concat())
    }

    fn reset(&mut self) {
        self.previous = None;
        self.current = None;
    }
}

/// Positions `at..at+n` of every row.
fn slice(tokens: &TokenBatch, at: usize, n: usize) -> TokenBatch {
    let ids = tokens
        .tokens
        .chunks_exact(tokens.seq.max(1))
        .flat_map(|row| row[at..at + n].iter().copied())
        .collect();
    TokenBatch {
        batch: tokens.batch,
        seq: n,
        tokens: ids,
    }
}
