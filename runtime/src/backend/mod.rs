//! The backend boundary: a prepared model that turns tokens (and XL memory) into logits.

mod cpu;
pub mod cuda;

pub use cpu::CpuBackend;
pub use cuda::{CudaBackend, CudaUnavailable, DeviceInfo, probe};

use crate::{KvCache, RuntimeError, TokenBatch, XlMemory};

/// Raw outputs of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendOutput {
    /// `[batch, seq, vocab]`.
    pub logits: Vec<f32>,
    /// Per layer `[batch, seq, D]` (XL models; empty otherwise).
    pub memory: Vec<Vec<f32>>,
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

    /// One decoding step of a RoPE model with a KV cache: logits `[batch, seq, vocab]` and
    /// the cache extended by `tokens`. Backends without KV-cache support say so.
    fn run_kv(
        &self,
        tokens: &TokenBatch,
        cache: &KvCache,
    ) -> Result<(Vec<f32>, KvCache), RuntimeError> {
        let _ = (tokens, cache);
        Err(RuntimeError::BackendUnavailable {
            backend: self.name(),
            reason: "this backend has no KV-cache decoding".into(),
        })
    }
}
