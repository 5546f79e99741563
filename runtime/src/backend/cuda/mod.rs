//! The CUDA backend: device discovery that never panics, and (with the `cuda` feature) the
//! device the executor of [`crate::backend::device`] runs on: cudarc, NVRTC-compiled
//! kernels, cuBLAS for the plain products.
//!
//! Without the feature everything here still builds: discovery answers
//! [`CudaUnavailable::NotBuilt`], so the public API never changes with features.

mod probe;

pub use probe::{CudaUnavailable, DeviceInfo, probe};

use crate::RuntimeError;

/// The error for a host without a usable CUDA device.
pub fn unavailable(reason: CudaUnavailable) -> RuntimeError {
    RuntimeError::BackendUnavailable {
        backend: "cuda",
        reason: reason.to_string(),
    }
}

/// Device 0 with every kernel compiled (or read from the PTX cache) and loaded.
#[cfg(feature = "cuda")]
pub fn open_device() -> Result<switchhead_kernels::gpu::CudaDevice, RuntimeError> {
    use switchhead_kernels::gpu::{CudaDevice, DeviceDesc};
    let ctx = probe::imp::context(0).map_err(unavailable)?;
    let info = probe::imp::info(&ctx, 0).map_err(unavailable)?;
    let desc = DeviceDesc {
        api: "cuda",
        name: info.name.clone(),
        memory_bytes: info.total_memory as u64,
        is_cpu: false,
    };
    CudaDevice::new(ctx, desc, &info.arch()).map_err(|e| RuntimeError::BackendUnavailable {
        backend: "cuda",
        reason: e.to_string(),
    })
}
