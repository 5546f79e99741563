//! The backend boundary: a prepared model that turns tokens (and XL memory) into logits.

mod cpu;
pub mod cuda;

pub use cpu::CpuBackend;
pub use cuda::{CudaBackend, CudaUnavailable, DeviceInfo, probe};

use crate::{RuntimeError, TokenBatch, XlMemory};

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
}
