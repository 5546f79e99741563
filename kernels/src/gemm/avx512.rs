//! AVX-512 f32 products for decode-sized row counts: a handful of rows against a transposed
//! `[out, in]` weight as dot products, or against a row-major `[in, out]` one as row updates;
//! both read each weight element once and pack nothing.
//! (A general packing GEMM packs the weight on every call, which costs as much as the product
//! when there is one row.) Every function here requires AVX-512F, checked once by
//! [`available`], and shapes the caller validated ([`super::gemm`]).

use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::Mat;

/// Rows up to which a product against a transposed weight runs as dot products.
pub(super) const SMALL_M: usize = 4;

/// Whether this CPU runs AVX-512F, unless `SWITCHHEAD_NO_AVX512` is set (to force and test
/// the portable path).
pub(crate) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        std::env::var_os("SWITCHHEAD_NO_AVX512").is_none() && is_x86_feature_detected!("avx512f")
    })
}

/// `c = a @ b + beta * c` for at most [`SMALL_M`] rows against `b` whose columns are
/// contiguous (`b.rs == 1`, a transposed `[out, in]` weight): each column is read once.
///
/// # Safety
/// AVX-512F is available, the operands hold every element the product touches,
/// `a.cs == 1`, `b.rs == 1` and `a.rows <= SMALL_M`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn gemm_small(a: Mat<'_>, b: Mat<'_>, c: &mut [f32], ldc: usize, beta: f32) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    for j in 0..n {
        let col = &b.data[j * b.cs..j * b.cs + k];
        for i in 0..m {
            let row = &a.data[i * a.rs..i * a.rs + k];
            // SAFETY: AVX-512F per this function's contract; both slices hold k floats.
            let dot = unsafe { dot(row, col) };
            let out = &mut c[i * ldc + j];
            *out = if beta == 0.0 { dot } else { dot + beta * *out };
        }
    }
}

/// `c = a @ b + beta * c` for at most [`SMALL_M`] rows against a row-major `b`
/// (`b.cs == 1`, an `[in, out]` weight): each output row accumulates `a[i][k] * b[k]`.
///
/// # Safety
/// AVX-512F is available, the operands hold every element the product touches,
/// `a.cs == 1`, `b.cs == 1` and `a.rows <= SMALL_M`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn gemm_small_rows(a: Mat<'_>, b: Mat<'_>, c: &mut [f32], ldc: usize, beta: f32) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    for i in 0..m {
        let out = &mut c[i * ldc..i * ldc + n];
        if beta == 0.0 {
            out.fill(0.0);
        } else {
            out.iter_mut().for_each(|v| *v *= beta);
        }
        for (p, &x) in a.data[i * a.rs..i * a.rs + k].iter().enumerate() {
            // SAFETY: AVX-512F per this function's contract; row p of b holds n floats.
            unsafe { axpy(x, &b.data[p * b.rs..p * b.rs + n], out) };
        }
    }
}

/// `y += alpha * x` over equal-length slices, 16 lanes at a time.
#[target_feature(enable = "avx512f")]
unsafe fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let av = _mm512_set1_ps(alpha);
    let mut i = 0;
    // SAFETY: every load and store touches lanes below n (the tail is masked).
    unsafe {
        while i < n {
            let lanes = (n - i).min(16);
            let mask = ((1u32 << lanes) - 1) as u16;
            let (xp, yp) = (x.as_ptr().add(i), y.as_mut_ptr().add(i));
            let v = _mm512_fmadd_ps(
                av,
                _mm512_maskz_loadu_ps(mask, xp),
                _mm512_maskz_loadu_ps(mask, yp),
            );
            _mm512_mask_storeu_ps(yp, mask, v);
            i += lanes;
        }
    }
}

/// `sum(x[i] * y[i])` over equal-length slices, 16 lanes at a time.
#[target_feature(enable = "avx512f")]
unsafe fn dot(x: &[f32], y: &[f32]) -> f32 {
    let k = x.len().min(y.len());
    let mut acc = [_mm512_setzero_ps(); 2];
    let mut i = 0;
    // SAFETY: every load reads lanes below k (the tail is masked).
    unsafe {
        while i + 32 <= k {
            let (xp, yp) = (x.as_ptr().add(i), y.as_ptr().add(i));
            acc[0] = _mm512_fmadd_ps(_mm512_loadu_ps(xp), _mm512_loadu_ps(yp), acc[0]);
            acc[1] = _mm512_fmadd_ps(
                _mm512_loadu_ps(xp.add(16)),
                _mm512_loadu_ps(yp.add(16)),
                acc[1],
            );
            i += 32;
        }
        while i < k {
            let lanes = (k - i).min(16);
            let mask = ((1u32 << lanes) - 1) as u16;
            let xv = _mm512_maskz_loadu_ps(mask, x.as_ptr().add(i));
            let yv = _mm512_maskz_loadu_ps(mask, y.as_ptr().add(i));
            acc[0] = _mm512_fmadd_ps(xv, yv, acc[0]);
            i += lanes;
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]))
    }
}
