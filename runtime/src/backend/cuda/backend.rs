//! `CudaBackend`: the [`Backend`] the session picks for `BackendKind::Cuda`, and for `Auto`
//! when a device is present and the backend can run the model.
//!
//! The CUDA executor runs the native plan's op list (`.shplan`); wiring the two together is
//! the next step. Until then every model is reported as not runnable here, with the reason,
//! so `Auto` falls back to the CPU and a forced `Cuda` fails with one clear line.

use std::path::Path;

use super::probe::{CudaUnavailable, probe};
use crate::backend::{Backend, BackendOutput};
use crate::{RuntimeError, TokenBatch, XlMemory};

/// A model prepared for the GPU.
#[derive(Debug)]
pub struct CudaBackend {
    vocab: usize,
}

impl CudaBackend {
    /// Probes the device, then checks that this backend can run the model at `path`.
    pub fn load(path: &Path) -> Result<CudaBackend, RuntimeError> {
        let device = probe().map_err(unavailable)?;
        Err(RuntimeError::BackendUnavailable {
            backend: "cuda",
            reason: format!(
                "found {} ({}), but the CUDA backend cannot run {} yet: it executes native \
                 plans, and the plan op list is not wired to it; use the cpu backend",
                device.name,
                device.arch(),
                path.display()
            ),
        })
    }

    /// The error for a host without a usable CUDA device.
    pub fn unavailable_because(reason: CudaUnavailable) -> RuntimeError {
        unavailable(reason)
    }
}

fn unavailable(reason: CudaUnavailable) -> RuntimeError {
    RuntimeError::BackendUnavailable {
        backend: "cuda",
        reason: reason.to_string(),
    }
}

impl Backend for CudaBackend {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn vocab_size(&self) -> Option<usize> {
        Some(self.vocab)
    }

    fn run(
        &self,
        _tokens: &TokenBatch,
        _memory: Option<&XlMemory>,
    ) -> Result<BackendOutput, RuntimeError> {
        Err(RuntimeError::Execution {
            backend: "cuda",
            reason: "not wired to the plan op list yet".into(),
        })
    }
}
