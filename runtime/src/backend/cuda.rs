//! The CUDA backend: not built yet. It exists so the API does not change when it arrives.

use crate::RuntimeError;

/// Placeholder for the CUDA backend.
#[derive(Debug)]
pub struct CudaBackend;

impl CudaBackend {
    /// Always [`RuntimeError::BackendUnavailable`] in this build.
    pub fn unavailable() -> RuntimeError {
        RuntimeError::BackendUnavailable {
            backend: "cuda",
            reason: "this build has no CUDA backend yet; use BackendKind::Cpu or Auto".into(),
        }
    }
}
