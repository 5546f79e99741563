//! The CUDA backend: device discovery, launch geometry, and (with the `cuda` feature) the
//! executor that owns the context and launches the kernels of `switchhead_kernels::cuda`.
//!
//! Without the feature everything here still builds: discovery answers
//! [`CudaUnavailable::NotBuilt`] and [`CudaBackend::load`] a typed error, so the public API
//! never changes with features.

mod backend;
#[cfg(feature = "cuda")]
mod executor;
pub mod geometry;
mod probe;

pub use backend::CudaBackend;
#[cfg(feature = "cuda")]
pub use executor::{CudaExecutor, DeviceWeight, EpilogueMode, ExpertGemmArgs, Routed};
pub use probe::{CudaUnavailable, DeviceInfo, probe};
