//! Launch geometry of every kernel: pure functions of the problem sizes, checked against the
//! limits every supported device has and the constants compiled into the `.cu` sources (a
//! test reads the sources, so the two cannot drift apart).

use super::{GpuError, Launch};

/// Threads of the grid-stride element-wise kernels.
pub const ELEMENTWISE_THREADS: u32 = 256;
/// Cap on grid-stride blocks (each loops over the rest).
pub const MAX_STRIDE_BLOCKS: u32 = 16_384;
/// Threads of the per-row kernels (embedding, LayerNorm, softmax); at most the OpenCL
/// prelude's `SH_REDUCE_SCRATCH`.
pub const ROW_THREADS: u32 = 256;
/// Largest grid dimension y (CUDA's limit, also safe for OpenCL global sizes).
pub const MAX_GRID_Y: u64 = 65_535;
/// Largest grid dimension x.
pub const MAX_GRID_X: u64 = (1 << 31) - 1;
/// gemm.cu and expert_gemm.cu: the output tile (BM x BN) and threads per block.
pub const TILE_M: u64 = 64;
pub const TILE_N: u64 = 64;
pub const TILE_THREADS: u32 = 256;
/// attention.cu: AT_BQ, AT_BKV, AT_THREADS.
pub const AT_BQ: u64 = 16;
pub const AT_BKV: u64 = 32;
pub const AT_THREADS: u32 = 128;

fn blocks(n: u64, per: u64) -> u64 {
    n.div_ceil(per)
}

/// A grid-stride launch over `n` elements (at least one block).
pub fn elementwise(n: u64) -> Launch {
    let b = blocks(n, ELEMENTWISE_THREADS as u64).clamp(1, MAX_STRIDE_BLOCKS as u64) as u32;
    Launch::linear(b, ELEMENTWISE_THREADS)
}

/// One block per row.
pub fn per_row(kernel: &str, rows: u64) -> Result<Launch, GpuError> {
    if rows == 0 || rows > MAX_GRID_X {
        return Err(GpuError::shape(
            kernel,
            format!("{rows} rows (need 1..={MAX_GRID_X})"),
        ));
    }
    Ok(Launch::linear(rows as u32, ROW_THREADS))
}

/// A single thread (the serial scan of expert counts).
pub fn single() -> Launch {
    Launch::linear(1, 1)
}

/// The plain GEMM: column tiles in x, row tiles in y.
pub fn gemm(m: u64, n: u64) -> Result<Launch, GpuError> {
    let (x, y) = (blocks(n, TILE_N), blocks(m, TILE_M));
    if y > MAX_GRID_Y || x == 0 || y == 0 {
        return Err(GpuError::shape(
            "gemm_nt",
            format!("[{m}, {n}] output: {y} row tiles (need 1..={MAX_GRID_Y})"),
        ));
    }
    Ok(Launch {
        grid: [x as u32, y as u32, 1],
        block: [TILE_THREADS, 1, 1],
    })
}

/// The grouped GEMM: column tiles in x; in y an upper bound of the row tiles summed over
/// experts, `ceil(n_slots / BM) + n_experts` (each expert wastes at most one partial tile).
pub fn expert_gemm(n_slots: u64, n_experts: u64, out_dim: u64) -> Result<Launch, GpuError> {
    if out_dim == 0 || n_experts == 0 {
        return Err(GpuError::shape(
            "expert_gemm",
            "out_dim and n_experts must be > 0",
        ));
    }
    let y = blocks(n_slots, TILE_M) + n_experts;
    if y > MAX_GRID_Y {
        let reason = format!(
            "{n_slots} slots over {n_experts} experts need {y} row tiles (max {MAX_GRID_Y})"
        );
        return Err(GpuError::shape("expert_gemm", reason));
    }
    Ok(Launch {
        grid: [blocks(out_dim, TILE_N) as u32, y as u32, 1],
        block: [TILE_THREADS, 1, 1],
    })
}

/// flash_attention's dynamic local memory in floats (layout in attention.cu).
pub fn attention_local_floats(dh: u64, xl: bool) -> u64 {
    let band = if xl { AT_BQ + AT_BKV - 1 } else { 0 };
    AT_BQ * dh + AT_BKV * dh + band * dh + AT_BQ * dh + AT_BQ * AT_BKV + 3 * AT_BQ
}

/// flash_attention: query tiles in x, (batch row, head) in y.
pub fn flash_attention(batch: u64, t: u64, heads: u64) -> Result<Launch, GpuError> {
    if t == 0 || batch * heads == 0 {
        return Err(GpuError::shape("flash_attention", "empty problem"));
    }
    if batch * heads > MAX_GRID_Y {
        let reason = format!("batch*heads {} > {MAX_GRID_Y}", batch * heads);
        return Err(GpuError::shape("flash_attention", reason));
    }
    Ok(Launch {
        grid: [blocks(t, AT_BQ) as u32, (batch * heads) as u32, 1],
        block: [AT_THREADS, 1, 1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::{PRELUDE_OPENCL, source};

    fn define(body: &str, name: &str) -> u64 {
        let key = format!("#define {name} ");
        let line = body
            .lines()
            .find(|l| l.starts_with(&key))
            .unwrap_or_else(|| panic!("{name} not defined"));
        line[key.len()..].trim().parse().expect("a number")
    }

    #[test]
    fn constants_match_the_sources() {
        let gemm = source("gemm").unwrap().body;
        let eg = source("expert_gemm").unwrap().body;
        let at = source("attention").unwrap().body;
        assert_eq!(
            (define(gemm, "GM_BM"), define(gemm, "GM_BN")),
            (TILE_M, TILE_N)
        );
        assert_eq!((define(eg, "EG_BM"), define(eg, "EG_BN")), (TILE_M, TILE_N));
        assert_eq!(define(gemm, "GM_THREADS"), TILE_THREADS as u64);
        assert_eq!(define(eg, "EG_THREADS"), TILE_THREADS as u64);
        assert_eq!((define(at, "AT_BQ"), define(at, "AT_BKV")), (AT_BQ, AT_BKV));
        assert_eq!(define(at, "AT_THREADS"), AT_THREADS as u64);
        assert!(define(PRELUDE_OPENCL, "SH_REDUCE_SCRATCH") >= ROW_THREADS as u64);
    }

    #[test]
    fn grids_cover_the_problem() {
        assert_eq!(elementwise(0).grid[0], 1);
        assert_eq!(elementwise(1000).grid[0], 4);
        assert_eq!(elementwise(u64::MAX / 2).grid[0], MAX_STRIDE_BLOCKS);
        let g = gemm(65, 1).unwrap();
        assert_eq!((g.grid[0], g.grid[1]), (1, 2));
        let e = expert_gemm(130, 5, 65).unwrap();
        assert_eq!((e.grid[0], e.grid[1]), (2, 3 + 5));
        let a = flash_attention(2, 37, 3).unwrap();
        assert_eq!((a.grid[0], a.grid[1]), (3, 6));
        assert!(per_row("x", 0).is_err() && flash_attention(1, 0, 1).is_err());
        assert_eq!(
            attention_local_floats(10, false),
            160 + 320 + 160 + 512 + 48
        );
    }
}
