//! The GPU side of the kernels: one set of kernel sources (`kernels/cuda/*.cu`) in two
//! dialects, the device interface the executor is written against, its CUDA and OpenCL
//! implementations, and a typed launcher per kernel.
//!
//! The sources, the interface and the launchers are plain Rust and always built; the device
//! implementations need their features (`cuda`: cudarc with dynamic loading; `opencl`:
//! opencl3, libOpenCL loaded at run time), so no toolkit or SDK is needed to build.

#[cfg(feature = "cuda")]
mod cuda;
mod device;
mod error;
pub mod geometry;
pub mod launch;
#[cfg(feature = "opencl")]
mod opencl;
mod sources;

#[cfg(feature = "cuda")]
pub use cuda::CudaDevice;
pub use device::{
    Arg, Device, DeviceDesc, Gemm, Launch, WType, bf16_bytes, download_f32, download_i32,
    f32_bytes, f32_to_bf16_bits, i32_bytes, i64_bytes,
};
pub use error::{GpuError, one_line_log, panic_text};
#[cfg(feature = "opencl")]
pub use opencl::{OpenClDevice, OpenClSelect};
pub use sources::{
    COMMON, Dialect, KernelSource, PRELUDE_CUDA, PRELUDE_OPENCL, SOURCES, source, source_of,
};
