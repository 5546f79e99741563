//! The device interface the GPU executor is written against, once: allocate, upload,
//! download, launch a named kernel, plain GEMM. Two implementations: CUDA (cudarc, NVRTC,
//! cuBLAS; feature `cuda`) and OpenCL (opencl3; feature `opencl`), each compiling the same
//! kernel sources (`kernels/cuda/*.cu`) in its own dialect ([`crate::gpu::Dialect`]).
//!
//! Buffers are untyped byte allocations owned by the device implementation and freed when
//! dropped; kernels and copies take element offsets, never pointers into a buffer, since
//! OpenCL has no pointer arithmetic on the host side. Every call is queued in order on the
//! device's one queue (stream); [`Device::download`] and [`Device::synchronize`] wait.

use std::fmt::Debug;

use super::GpuError;

/// The type of a weight's elements on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WType {
    /// 4-byte floats.
    #[default]
    F32,
    /// bf16 bits (2 bytes), widened to f32 in the kernels.
    Bf16,
}

impl WType {
    /// The `wtype` argument the kernels take (0 f32, 1 bf16).
    pub fn code(self) -> i32 {
        match self {
            WType::F32 => 0,
            WType::Bf16 => 1,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            WType::F32 => 4,
            WType::Bf16 => 2,
        }
    }

    /// Short name (`f32`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            WType::F32 => "f32",
            WType::Bf16 => "bf16",
        }
    }
}

/// One kernel argument, in the order of the kernel's parameter list.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a, B> {
    /// A device buffer (the kernel's pointer parameter).
    Buf(&'a B),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    /// Dynamic local (shared) memory of this many bytes: the kernel's `LOCAL_ARG`, which
    /// must be its last parameter (OpenCL passes it as an argument, CUDA as the launch's
    /// shared-memory size).
    Local(usize),
}

/// Launch geometry in CUDA's terms: `grid` blocks of `block` threads (OpenCL: the global
/// size is `grid * block`, the work-group size `block`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    pub grid: [u32; 3],
    pub block: [u32; 3],
}

impl Launch {
    /// `grid` x 1 x 1 blocks of `block` x 1 x 1 threads.
    pub fn linear(grid: u32, block: u32) -> Launch {
        Launch {
            grid: [grid, 1, 1],
            block: [block, 1, 1],
        }
    }
}

/// `y[m, n] = alpha * x[m, k] @ w[n, k]^T + beta * y` over row-major views: row `r` of x
/// starts at element `x_off + r * ldx`, row `c` of w (a `[n, k]` weight, rows `k` apart) at
/// `w_off + c * k`, row `r` of y at `y_off + r * ldy`. `beta` is 0 (y is overwritten, its
/// old contents never read) or 1.
#[derive(Debug, Clone, Copy)]
pub struct Gemm<'a, B> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub x: &'a B,
    pub x_off: usize,
    pub ldx: usize,
    pub w: &'a B,
    pub w_off: usize,
    pub w_type: WType,
    pub y: &'a B,
    pub y_off: usize,
    pub ldy: usize,
    pub alpha: f32,
    pub beta: f32,
}

/// What a device reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceDesc {
    /// `cuda` or `opencl`.
    pub api: &'static str,
    /// The device's name (and platform, for OpenCL).
    pub name: String,
    /// Global memory in bytes.
    pub memory_bytes: u64,
    /// True when the device is a CPU (PoCL, say): `auto` never picks such a device.
    pub is_cpu: bool,
}

/// A device the executor runs on (see the module docs).
pub trait Device: Send + Sync + Debug + 'static {
    /// An allocation on the device, freed on drop.
    type Buffer: Send + Sync + Debug;

    /// What this device is.
    fn desc(&self) -> &DeviceDesc;

    /// A zero-filled buffer of `bytes` bytes (at least one byte is allocated).
    fn alloc_zeroed(&self, bytes: usize) -> Result<Self::Buffer, GpuError>;

    /// A new buffer holding `data`.
    fn upload(&self, data: &[u8]) -> Result<Self::Buffer, GpuError>;

    /// Writes `data` into `buf` from byte `offset` on.
    fn write(&self, buf: &Self::Buffer, offset: usize, data: &[u8]) -> Result<(), GpuError>;

    /// Reads `out.len()` bytes of `buf` from byte `offset` (waits for queued work).
    fn download(&self, buf: &Self::Buffer, offset: usize, out: &mut [u8]) -> Result<(), GpuError>;

    /// Copies `bytes` bytes from `src` at `src_off` to `dst` at `dst_off` (byte offsets).
    fn copy(
        &self,
        src: &Self::Buffer,
        src_off: usize,
        dst: &Self::Buffer,
        dst_off: usize,
        bytes: usize,
    ) -> Result<(), GpuError>;

    /// Queues kernel `name` (an entry point of one of [`crate::gpu::SOURCES`]).
    fn launch(
        &self,
        name: &'static str,
        geometry: Launch,
        args: &[Arg<'_, Self::Buffer>],
    ) -> Result<(), GpuError>;

    /// Queues a plain GEMM: cuBLAS on CUDA, the portable `gemm_nt` kernel on OpenCL.
    fn gemm(&self, g: &Gemm<'_, Self::Buffer>) -> Result<(), GpuError>;

    /// Waits for everything queued.
    fn synchronize(&self) -> Result<(), GpuError>;
}

/// f32 values as bytes (little-endian, as every supported device).
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// i32 values as bytes.
pub fn i32_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// i64 values as bytes.
pub fn i64_bytes(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// f32 values rounded to bf16 (nearest even, NaN kept quiet, as torch), as bytes.
pub fn bf16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|&x| f32_to_bf16_bits(x).to_le_bytes())
        .collect()
}

/// f32 -> bf16 bits, round to nearest even (as the kernels' `f32_to_bf16`).
pub fn f32_to_bf16_bits(f: f32) -> u16 {
    let u = f.to_bits();
    if u & 0x7fff_ffff > 0x7f80_0000 {
        return ((u >> 16) | 0x40) as u16;
    }
    ((u + 0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

/// Reads `n` 4-byte values from `buf` at element `offset`, each decoded by `word`.
fn download_words<D: Device, T>(
    dev: &D,
    buf: &D::Buffer,
    (offset, n): (usize, usize),
    word: fn([u8; 4]) -> T,
) -> Result<Vec<T>, GpuError> {
    let mut bytes = vec![0u8; n * 4];
    dev.download(buf, offset * 4, &mut bytes)?;
    Ok(bytes
        .chunks_exact(4)
        .map(|c| word([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Reads `n` f32 values from `buf` at element `offset`.
pub fn download_f32<D: Device>(
    dev: &D,
    buf: &D::Buffer,
    offset: usize,
    n: usize,
) -> Result<Vec<f32>, GpuError> {
    download_words(dev, buf, (offset, n), f32::from_le_bytes)
}

/// Reads `n` i32 values from `buf` at element `offset`.
pub fn download_i32<D: Device>(
    dev: &D,
    buf: &D::Buffer,
    offset: usize,
    n: usize,
) -> Result<Vec<i32>, GpuError> {
    download_words(dev, buf, (offset, n), i32::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounding_matches_torch() {
        assert_eq!(f32_to_bf16_bits(1.0), 0x3f80);
        // 1 + 2^-8 is a tie between 1 and 1 + 2^-7: rounds to even (1.0).
        assert_eq!(f32_to_bf16_bits(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(f32_to_bf16_bits(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(f32_to_bf16_bits(-2.0), 0xc000);
        assert_eq!(f32_to_bf16_bits(f32::NAN) & 0x7fc0, 0x7fc0);
    }
}
