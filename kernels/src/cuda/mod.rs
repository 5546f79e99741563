//! CUDA kernels as `.cu` sources (in `kernels/cuda/`, pulled in with `include_str!`) and the
//! compile path that turns them into PTX: NVRTC at first use, cached on disk by a hash of
//! (source, architecture, options), with a driver-only fallback to prebuilt PTX.
//!
//! The sources and the cache are plain Rust and always built (their tests run on any host);
//! only [`Nvrtc`], the compiler that calls libnvrtc through cudarc, needs the `cuda` feature.

mod cache;
mod error;
#[cfg(feature = "cuda")]
mod nvrtc;

pub use crate::gpu::{COMMON, KernelSource, SOURCES, source};
pub use cache::{
    CACHE_ENV, CompileRequest, KernelCache, Ptx, PtxCompiler, PtxOrigin, cache_key, default_options,
};
pub use error::CudaKernelError;
#[cfg(feature = "cuda")]
pub use nvrtc::Nvrtc;
