//! Choosing a path per kind once per process, and [`packed_gemm`]'s shape checks.

use std::ops::Range;
use std::sync::OnceLock;

use switchhead_ops::plan::PANEL;

use super::{PackedKind, PackedWeight, portable};
use crate::gemm::{Mat, Start};

/// A way to compute a product; [`Path::name`] is what [`paths`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Path {
    Portable,
    /// Weights widened to f32 in registers, f32 activations (int8, int4).
    Avx512F,
    /// Activations quantized to bytes, `vpdpbusd` (int8, int4).
    Vnni,
    /// Activations rounded to bf16, `vdpbf16ps`.
    Bf16,
}

impl Path {
    pub(super) fn name(self) -> &'static str {
        match self {
            Path::Portable => "portable",
            Path::Avx512F => "avx512f",
            Path::Vnni => "avx512-vnni",
            Path::Bf16 => "avx512-bf16",
        }
    }
}

/// Whether `SWITCHHEAD_QUANT_PATH=portable` (or `SWITCHHEAD_NO_AVX512`) forces the portable
/// path (read once).
fn forced_portable() -> bool {
    static FORCED: OnceLock<bool> = OnceLock::new();
    *FORCED.get_or_init(|| {
        std::env::var("SWITCHHEAD_QUANT_PATH").is_ok_and(|v| v == "portable")
            || std::env::var_os("SWITCHHEAD_NO_AVX512").is_some()
    })
}

/// The paths this CPU can run for `kind`, fastest first (the portable one last, always).
pub(super) fn runnable(kind: PackedKind) -> Vec<Path> {
    let mut paths = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        let base = is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl");
        match kind {
            PackedKind::Bf16 if base && is_x86_feature_detected!("avx512bf16") => {
                paths.push(Path::Bf16)
            }
            PackedKind::Bf16 => {}
            _ if base => {
                if is_x86_feature_detected!("avx512vnni") {
                    paths.push(Path::Vnni);
                }
                paths.push(Path::Avx512F);
            }
            _ => {}
        }
    }
    paths.push(Path::Portable);
    paths
}

/// The path [`packed_gemm`] takes for `kind` (cached per kind).
fn chosen(kind: PackedKind) -> Path {
    static INT: OnceLock<Path> = OnceLock::new();
    static BF16: OnceLock<Path> = OnceLock::new();
    let (cell, probe) = match kind {
        PackedKind::Bf16 => (&BF16, PackedKind::Bf16),
        _ => (&INT, PackedKind::Int8),
    };
    *cell.get_or_init(|| match forced_portable() {
        true => Path::Portable,
        false => runnable(probe)[0],
    })
}

/// The kernel path each kind takes on this CPU, e.g.
/// `"int8: avx512-vnni, int4: avx512-vnni, bf16: avx512-bf16"`.
pub fn paths() -> String {
    let int = chosen(PackedKind::Int8).name();
    format!(
        "int8: {int}, int4: {int}, bf16: {}",
        chosen(PackedKind::Bf16).name()
    )
}

/// Whether bf16 products run on BF16 dot products here (else the portable path widens
/// them, slower than keeping the weight f32).
pub fn bf16_native() -> bool {
    chosen(PackedKind::Bf16) == Path::Bf16
}

/// `c[r, j] = sum_i a[r, i] * W_m[cols.start + j, i]` (`+ beta * c[r, j]`, or `+ bias[j]`),
/// for `j in 0..cols.len()`; `cols.start` a multiple of [`PANEL`]. `a` has contiguous rows
/// (`a.cs == 1`) and `a.cols == w.inp()`.
///
/// Shapes are the callers' invariants; a violation panics rather than reading out of bounds.
pub(crate) fn packed_gemm(
    a: Mat<'_>,
    w: &PackedWeight,
    m: usize,
    cols: Range<usize>,
    c: &mut [f32],
    ldc: usize,
    start: Start<'_>,
) {
    gemm_on(chosen(w.kind), a, w, m, cols, c, ldc, start);
}

/// [`packed_gemm`] on a given path, which must be one of [`runnable`]`(w.kind)`.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_on(
    path: Path,
    a: Mat<'_>,
    w: &PackedWeight,
    m: usize,
    cols: Range<usize>,
    c: &mut [f32],
    ldc: usize,
    start: Start<'_>,
) {
    check_shapes(a, w, m, &cols, c, ldc, start);
    let n = cols.len();
    if a.rows == 0 || n == 0 {
        return;
    }
    assert!(
        runnable(w.kind).contains(&path),
        "{path:?} does not run {:?} here",
        w.kind
    );
    #[cfg(target_arch = "x86_64")]
    {
        let t = super::simd::Call {
            a,
            w,
            m,
            cols: cols.clone(),
            ldc,
            start,
        };
        // SAFETY: `runnable` found the CPU features the path needs; the shapes are checked.
        match path {
            Path::Vnni => return unsafe { super::simd_vnni::gemm(&t, c) },
            Path::Avx512F => return unsafe { super::simd_f32::gemm(&t, c) },
            Path::Bf16 => return unsafe { super::simd_bf16::gemm(&t, c) },
            Path::Portable => {}
        }
    }
    portable::gemm(a, w, m, cols, c, ldc, start);
}

fn check_shapes(
    a: Mat<'_>,
    w: &PackedWeight,
    m: usize,
    cols: &Range<usize>,
    c: &[f32],
    ldc: usize,
    start: Start<'_>,
) {
    assert!(m < w.count, "packed_gemm: matrix {m} of {}", w.count);
    assert!(
        a.cs == 1 && a.cols == w.inp && a.fits(),
        "packed_gemm activations"
    );
    assert!(
        cols.start.is_multiple_of(PANEL) && cols.start <= cols.end && cols.end <= w.out,
        "packed_gemm columns {cols:?} of {}",
        w.out
    );
    if a.rows > 0 && !cols.is_empty() {
        assert!(
            (a.rows - 1) * ldc + cols.len() <= c.len(),
            "packed_gemm output"
        );
    }
    if let Start::Bias(b) = start {
        assert!(b.len() >= cols.len(), "packed_gemm bias");
    }
}

/// The f32 `panels` product (`w` from `switchhead_ops::plan::to_panels`), for the
/// microbenchmark to compare against: `c = a @ w^T + bias`, `a` `[m, k]`, `c` `[m, n]`.
#[doc(hidden)]
pub fn bench_f32_panels(
    a: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    bias: &[f32],
    c: &mut [f32],
) {
    crate::gemm::panels_gemm(Mat::rows(a, m, k), w, n, c, n, Start::Bias(bias));
}

/// The names of the paths this CPU runs for `kind`, fastest first (for the microbenchmark).
#[doc(hidden)]
pub fn bench_paths(kind: PackedKind) -> Vec<&'static str> {
    runnable(kind).into_iter().map(Path::name).collect()
}

/// `c = a @ W_0^T + bias` over all columns on the path named `path` (one of
/// [`bench_paths`]), for the microbenchmark: `a` `[m, w.inp()]`, `c` `[m, w.out()]`.
#[doc(hidden)]
pub fn bench_packed(
    path: &str,
    a: &[f32],
    m: usize,
    w: &PackedWeight,
    bias: &[f32],
    c: &mut [f32],
) {
    let path = runnable(w.kind)
        .into_iter()
        .find(|p| p.name() == path)
        .unwrap_or_else(|| panic!("path {path} does not run {:?} here", w.kind));
    let a = Mat::rows(a, m, w.inp);
    gemm_on(path, a, w, 0, 0..w.out, c, w.out, Start::Bias(bias));
}
