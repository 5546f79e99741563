//! The backend boundary: a prepared model that turns tokens (and XL memory) into logits.

mod cpu;
pub mod cuda;
pub mod device;
pub mod opencl;

pub use cpu::CpuBackend;
pub use cuda::{CudaUnavailable, DeviceInfo, probe};
pub use device::{DeviceBackend, RouteTrace};

use crate::{KvCache, RuntimeError, TokenBatch, XlMemory};

/// Raw outputs of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendOutput {
    /// `[batch, seq, vocab]`.
    pub logits: Vec<f32>,
    /// Per layer `[batch, seq, D]` (XL models; empty otherwise).
    pub memory: Vec<Vec<f32>>,
}

/// Decoding state kept inside a backend (on a device): the KV cache or the XL memory.
pub trait ResidentDecoder: Send + std::fmt::Debug {
    /// Tokens per batch row the state holds.
    fn past(&self) -> usize;
    /// Feeds `tokens` `[batch, seq]`; returns their logits `[batch, seq, vocab]`.
    fn step(&mut self, tokens: &TokenBatch) -> Result<Vec<f32>, RuntimeError>;
    /// Forgets everything held.
    fn reset(&mut self);
}

/// A model prepared for one backend. Inputs arrive checked (shapes, token range).
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Short name for errors and logs.
    fn name(&self) -> &'static str;
    /// The vocabulary size, when the backend knows it from the model.
    fn vocab_size(&self) -> Option<usize>;
    /// Runs one batch; `memory` is required for XL models (mem_len may be 0).
    fn run(
        &self,
        tokens: &TokenBatch,
        memory: Option<&XlMemory>,
    ) -> Result<BackendOutput, RuntimeError>;

    /// One decoding step of a RoPE model with a KV cache: logits `[batch, seq, vocab]`,
    /// `cache` extended by `tokens` (in place where the backend can; on an error its `past`
    /// is unchanged). Backends without KV-cache support say so.
    fn run_kv(&self, tokens: &TokenBatch, cache: &mut KvCache) -> Result<Vec<f32>, RuntimeError> {
        let _ = (tokens, cache);
        Err(RuntimeError::BackendUnavailable {
            backend: self.name(),
            reason: "this backend has no KV-cache decoding".into(),
        })
    }

    /// One step of independent RoPE sequences sharing the pass (continuous batching):
    /// `tokens[r]` is the next token of the sequence whose batch-1 cache is `caches[r]`, each
    /// at its own position. Returns logits `[n, vocab]`, each cache extended by its token.
    /// `None`: this backend cannot share such a step (the caller steps each one alone).
    fn run_kv_rows(
        &self,
        tokens: &[i64],
        caches: &mut [&mut KvCache],
    ) -> Option<Result<Vec<f32>, RuntimeError>> {
        let _ = (tokens, caches);
        None
    }

    /// A decoder for `batch` rows whose state the backend keeps (a device's memory), or
    /// `None`: the [`crate::Decoder`] keeps it on the host and calls [`Backend::run`] /
    /// [`Backend::run_kv`].
    fn resident_decoder(
        &self,
        batch: usize,
    ) -> Option<Result<Box<dyn ResidentDecoder + '_>, RuntimeError>> {
        let _ = batch;
        None
    }
}
