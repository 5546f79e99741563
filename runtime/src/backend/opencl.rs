//! The OpenCL backend's device: any OpenCL 1.2 device with doubles (PoCL on a CPU, an AMD
//! or Intel GPU), libOpenCL loaded at run time. `--executor opencl` takes any device;
//! `auto` only a GPU (on a CPU device the native executor is faster).

use crate::RuntimeError;

/// Which OpenCL devices [`open_device`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// A GPU only (what `auto` takes).
    GpuOnly,
    /// Any device, CPUs included.
    Any,
}

/// The first acceptable device with every kernel built.
#[cfg(feature = "opencl")]
pub fn open_device(accept: Accept) -> Result<switchhead_kernels::gpu::OpenClDevice, RuntimeError> {
    use switchhead_kernels::gpu::{OpenClDevice, OpenClSelect};
    let select = match accept {
        Accept::GpuOnly => OpenClSelect::GpuOnly,
        Accept::Any => OpenClSelect::Any,
    };
    OpenClDevice::open(select).map_err(|e| RuntimeError::BackendUnavailable {
        backend: "opencl",
        reason: e.to_string(),
    })
}

/// Built without the `opencl` feature: always unavailable.
#[cfg(not(feature = "opencl"))]
pub fn open_device(_accept: Accept) -> Result<std::convert::Infallible, RuntimeError> {
    Err(RuntimeError::BackendUnavailable {
        backend: "opencl",
        reason: "built without the opencl feature".into(),
    })
}
