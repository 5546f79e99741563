//! Launch geometry of every kernel: pure functions of the problem sizes, checked against the
//! limits of the hardware and the constants compiled into the `.cu` sources (a test reads the
//! sources, so the two cannot drift apart).

use std::fmt;

/// Grid, block and dynamic shared memory of one launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    /// Blocks per grid dimension.
    pub grid: (u32, u32, u32),
    /// Threads per block dimension.
    pub block: (u32, u32, u32),
    /// Dynamic shared memory in bytes.
    pub shared_bytes: u32,
}

/// A problem too large (or malformed) for a kernel's launch shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeometryError {
    /// The kernel.
    pub kernel: &'static str,
    /// What does not fit.
    pub reason: String,
}

impl fmt::Display for GeometryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kernel, self.reason)
    }
}

impl std::error::Error for GeometryError {}

/// Threads of the grid-stride element-wise kernels.
pub const ELEMENTWISE_THREADS: u32 = 256;
/// Cap on grid-stride blocks (each loops over the rest).
pub const MAX_STRIDE_BLOCKS: u32 = 16_384;
/// Threads of the per-row kernels (embedding, LayerNorm).
pub const ROW_THREADS: u32 = 256;
/// Largest gridDim.y / gridDim.z.
pub const MAX_GRID_YZ: u64 = 65_535;
/// Largest gridDim.x.
pub const MAX_GRID_X: u64 = (1 << 31) - 1;
/// Default per-block dynamic shared memory without opting in.
pub const DEFAULT_SHARED_BYTES: u32 = 48 * 1024;

/// expert_gemm.cu: EG_BM, EG_BN, EG_THREADS.
pub const EG_BM: u64 = 64;
pub const EG_BN: u64 = 64;
pub const EG_THREADS: u32 = 256;
/// routing.cu: the single scan block of expert_offsets.
pub const OFFSETS_THREADS: u32 = 1024;
/// attention.cu: AT_BQ, AT_BKV, AT_THREADS.
pub const AT_BQ: u64 = 16;
pub const AT_BKV: u64 = 32;
pub const AT_THREADS: u32 = 128;
/// decode.cu: DEC_TILE, DEC_THREADS.
pub const DEC_TILE: u64 = 128;
pub const DEC_THREADS: u32 = 128;

fn err(kernel: &'static str, reason: impl Into<String>) -> GeometryError {
    GeometryError {
        kernel,
        reason: reason.into(),
    }
}

fn blocks(n: u64, per: u64) -> u64 {
    n.div_ceil(per)
}

/// A grid-stride launch over `n` elements (at least one block).
pub fn elementwise(n: u64) -> Launch {
    let b = blocks(n, ELEMENTWISE_THREADS as u64).clamp(1, MAX_STRIDE_BLOCKS as u64) as u32;
    Launch {
        grid: (b, 1, 1),
        block: (ELEMENTWISE_THREADS, 1, 1),
        shared_bytes: 0,
    }
}

/// One block per row (embedding, LayerNorm).
pub fn per_row(kernel: &'static str, rows: u64) -> Result<Launch, GeometryError> {
    if rows == 0 || rows > MAX_GRID_X {
        return Err(err(kernel, format!("{rows} rows (need 1..={MAX_GRID_X})")));
    }
    Ok(Launch {
        grid: (rows as u32, 1, 1),
        block: (ROW_THREADS, 1, 1),
        shared_bytes: 0,
    })
}

/// expert_offsets: one block scanning at most 1024 expert counts.
pub fn expert_offsets(n_experts: u64) -> Result<Launch, GeometryError> {
    if n_experts == 0 || n_experts > OFFSETS_THREADS as u64 {
        let reason = format!("{n_experts} experts (the scan block holds 1..={OFFSETS_THREADS})");
        return Err(err("expert_offsets", reason));
    }
    Ok(Launch {
        grid: (1, 1, 1),
        block: (OFFSETS_THREADS, 1, 1),
        shared_bytes: 0,
    })
}

/// The grouped GEMM: column tiles in x; in y an upper bound of the row tiles summed over
/// experts, `ceil(n_slots / BM) + n_experts` (each expert wastes at most one partial tile).
pub fn expert_gemm(n_slots: u64, n_experts: u64, out_dim: u64) -> Result<Launch, GeometryError> {
    if out_dim == 0 || n_experts == 0 {
        return Err(err("expert_gemm", "out_dim and n_experts must be > 0"));
    }
    let y = blocks(n_slots, EG_BM) + n_experts;
    if y > MAX_GRID_YZ {
        let reason = format!(
            "{n_slots} slots over {n_experts} experts need {y} row tiles (max {MAX_GRID_YZ})"
        );
        return Err(err("expert_gemm", reason));
    }
    let x = blocks(out_dim, EG_BN);
    Ok(Launch {
        grid: (x as u32, y as u32, 1),
        block: (EG_THREADS, 1, 1),
        shared_bytes: 0,
    })
}

/// The real number of row tiles the grouped GEMM runs, given the per-expert counts.
pub fn expert_gemm_tiles(counts: &[u64]) -> u64 {
    counts.iter().map(|&c| blocks(c, EG_BM)).sum()
}

/// flash_attention's dynamic shared memory in bytes (layout in attention.cu).
pub fn attention_shared_bytes(dh: u64, xl: bool) -> u64 {
    let band = if xl { AT_BQ + AT_BKV - 1 } else { 0 };
    let floats = AT_BQ * dh + AT_BKV * dh + band * dh + AT_BQ * dh + AT_BQ * AT_BKV + 3 * AT_BQ;
    floats * 4
}

/// flash_attention: query tiles in x, (batch row, head) in y.
pub fn flash_attention(
    batch: u64,
    t: u64,
    heads: u64,
    dh: u64,
    xl: bool,
    max_shared: u64,
) -> Result<Launch, GeometryError> {
    if t == 0 || dh == 0 || batch * heads == 0 {
        return Err(err("flash_attention", "empty problem"));
    }
    if batch * heads > MAX_GRID_YZ {
        return Err(err(
            "flash_attention",
            format!("batch*heads {} > {MAX_GRID_YZ}", batch * heads),
        ));
    }
    let shared = attention_shared_bytes(dh, xl);
    if shared > max_shared {
        let reason = format!(
            "d_head {dh} needs {shared} bytes of shared memory, the device has {max_shared}"
        );
        return Err(err("flash_attention", reason));
    }
    Ok(Launch {
        grid: (blocks(t, AT_BQ) as u32, (batch * heads) as u32, 1),
        block: (AT_THREADS, 1, 1),
        shared_bytes: shared as u32,
    })
}

/// decode_attention: (batch row, head) in x, query rows in y.
pub fn decode_attention(
    batch: u64,
    heads: u64,
    t_q: u64,
    dh: u64,
) -> Result<Launch, GeometryError> {
    if batch * heads == 0 || t_q == 0 || dh == 0 {
        return Err(err("decode_attention", "empty problem"));
    }
    if t_q > MAX_GRID_YZ {
        return Err(err(
            "decode_attention",
            format!("{t_q} query rows > {MAX_GRID_YZ}"),
        ));
    }
    let shared = (2 * dh + DEC_TILE + 33) * 4;
    Ok(Launch {
        grid: ((batch * heads) as u32, t_q as u32, 1),
        block: (DEC_THREADS, 1, 1),
        shared_bytes: shared as u32,
    })
}

#[cfg(test)]
#[path = "geometry_tests.rs"]
mod tests;
