//! Errors of the CUDA compile path.

use std::path::PathBuf;

/// Why a kernel module could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum CudaKernelError {
    /// libnvrtc is not loadable on this host (or panicked while loading).
    #[error("NVRTC is unavailable: {reason}")]
    NvrtcUnavailable { reason: String },
    /// NVRTC rejected a source.
    #[error("NVRTC failed to compile {name}.cu for {arch}: {log}")]
    Compile {
        name: String,
        arch: String,
        log: String,
    },
    /// No compiler, and no cached or prebuilt PTX for this module.
    #[error("no PTX for kernel module {name} ({arch}): no compiler ({why}); looked for {looked:?}")]
    NoPtx {
        name: String,
        arch: String,
        why: String,
        looked: Vec<PathBuf>,
    },
    /// Reading a cached file failed for a reason other than its absence.
    #[error("kernel cache {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}
