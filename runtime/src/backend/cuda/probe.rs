//! Finding a CUDA device without ever panicking.
//!
//! Order: the `cuda` feature (else [`CudaUnavailable::NotBuilt`]); libcuda loadable
//! (`is_culib_present`, else [`CudaUnavailable::NoLibcuda`]: cudarc panics when it is absent,
//! so nothing else in cudarc is touched first); then the context on device 0 inside
//! `catch_unwind` (CUDA_ERROR_NO_DEVICE becomes [`CudaUnavailable::NoDevice`]).

/// Why there is no usable CUDA device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CudaUnavailable {
    /// The binary was built without the `cuda` feature.
    #[error("built without the cuda feature")]
    NotBuilt,
    /// The driver library could not be loaded.
    #[error("libcuda not found (no NVIDIA driver on this host)")]
    NoLibcuda,
    /// The driver is there but reports no device.
    #[error("no CUDA device")]
    NoDevice,
    /// The driver failed otherwise (initialisation, context creation).
    #[error("CUDA driver error: {0}")]
    Driver(String),
    /// cudarc panicked (caught).
    #[error("CUDA initialisation panicked: {0}")]
    Panicked(String),
}

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Device ordinal.
    pub ordinal: usize,
    /// Marketing name, e.g. "NVIDIA H200".
    pub name: String,
    /// (major, minor), e.g. (9, 0).
    pub compute_capability: (i32, i32),
    /// Global memory in bytes.
    pub total_memory: usize,
}

impl DeviceInfo {
    /// The NVRTC virtual architecture for this device, e.g. `compute_90`.
    pub fn arch(&self) -> String {
        let (major, minor) = self.compute_capability;
        format!("compute_{major}{minor}")
    }
}

/// Probes device 0.
pub fn probe() -> Result<DeviceInfo, CudaUnavailable> {
    imp::probe(0)
}

#[cfg(not(feature = "cuda"))]
mod imp {
    use super::{CudaUnavailable, DeviceInfo};

    pub(super) fn probe(_ordinal: usize) -> Result<DeviceInfo, CudaUnavailable> {
        Err(CudaUnavailable::NotBuilt)
    }
}

#[cfg(feature = "cuda")]
pub(crate) mod imp {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::Arc;

    use cudarc::driver::{CudaContext, DriverError, sys};

    use super::{CudaUnavailable, DeviceInfo};
    use switchhead_kernels::gpu::panic_text;

    pub(super) fn probe(ordinal: usize) -> Result<DeviceInfo, CudaUnavailable> {
        let ctx = context(ordinal)?;
        info(&ctx, ordinal)
    }

    /// The primary context of `ordinal`, or why not.
    pub(crate) fn context(ordinal: usize) -> Result<Arc<CudaContext>, CudaUnavailable> {
        // SAFETY: tries dlopen on cudarc's candidate names, touches nothing else.
        let present = catch_unwind(|| unsafe { sys::is_culib_present() });
        if !present.unwrap_or(false) {
            return Err(CudaUnavailable::NoLibcuda);
        }
        match catch_unwind(AssertUnwindSafe(|| CudaContext::new(ordinal))) {
            Ok(Ok(ctx)) => Ok(ctx),
            Ok(Err(e)) => Err(driver_error(e)),
            Err(panic) => Err(CudaUnavailable::Panicked(panic_text(&*panic))),
        }
    }

    pub(crate) fn info(
        ctx: &Arc<CudaContext>,
        ordinal: usize,
    ) -> Result<DeviceInfo, CudaUnavailable> {
        let err = |e: DriverError| CudaUnavailable::Driver(e.to_string());
        Ok(DeviceInfo {
            ordinal,
            name: ctx.name().map_err(err)?,
            compute_capability: ctx.compute_capability().map_err(err)?,
            total_memory: ctx.total_mem().map_err(err)?,
        })
    }

    fn driver_error(e: DriverError) -> CudaUnavailable {
        use sys::cudaError_enum::{CUDA_ERROR_INVALID_DEVICE, CUDA_ERROR_NO_DEVICE};
        match e.0 {
            CUDA_ERROR_NO_DEVICE | CUDA_ERROR_INVALID_DEVICE => CudaUnavailable::NoDevice,
            _ => CudaUnavailable::Driver(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a GPU-less host the probe answers a typed reason and never panics; on a GPU host it
    /// finds the device.
    #[test]
    fn probe_never_panics() {
        match probe() {
            Ok(d) => {
                eprintln!("found {} ({})", d.name, d.arch());
                assert!(d.compute_capability.0 >= 3);
            }
            Err(reason) => {
                eprintln!("no CUDA device: {reason}");
                if !cfg!(feature = "cuda") {
                    assert_eq!(reason, CudaUnavailable::NotBuilt);
                }
            }
        }
    }

    #[test]
    fn arch_names_the_virtual_architecture() {
        let d = DeviceInfo {
            ordinal: 0,
            name: "x".into(),
            compute_capability: (9, 0),
            total_memory: 0,
        };
        assert_eq!(d.arch(), "compute_90");
    }

    #[test]
    fn reasons_read_as_the_brief_says() {
        assert_eq!(
            CudaUnavailable::NotBuilt.to_string(),
            "built without the cuda feature"
        );
        assert!(
            CudaUnavailable::NoLibcuda
                .to_string()
                .starts_with("libcuda not found")
        );
        assert_eq!(CudaUnavailable::NoDevice.to_string(), "no CUDA device");
    }
}
