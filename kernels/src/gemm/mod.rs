//! A safe strided f32 matrix product over slices.
//!
//! `matrixmultiply` runs [`gemm`] (small, dependency-free, runtime AVX/FMA dispatch, the GEMM
//! ndarray uses), except for decode-sized row counts on CPUs with AVX-512F, where [`avx512`]'s
//! dot products or row updates read the weight once instead of packing it
//! (`SWITCHHEAD_NO_AVX512` turns that off). Weights a plan stores in `panels` go through
//! [`panels_gemm`] ([`tile512`]'s register tile, which packs only the activations). The same
//! tile packing the weight on every call measured no faster than `matrixmultiply`, so only the
//! pre-packed form is kept.

#[cfg(target_arch = "x86_64")]
mod avx512;
mod grouped;
mod panels;
#[cfg(target_arch = "x86_64")]
mod tile512;

#[cfg(target_arch = "x86_64")]
pub(crate) use avx512::available as avx512_available;
pub(crate) use grouped::{Dispatch, Experts, Slots, grouped_gemm};
pub(crate) use panels::panels_gemm;

/// How a product starts its output: `c = a @ b + beta * c`, or `c = a @ b + bias` with one
/// bias value per output column (added in the register tile's stores, so C is written once
/// and never read).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Start<'a> {
    Beta(f32),
    Bias(&'a [f32]),
}

impl Start<'_> {
    /// For a product that cannot add a bias in its stores: writes the bias into the first `n`
    /// columns of `m` rows of `c` (row stride `ldc`) and returns the beta that keeps it (or
    /// the beta asked for).
    pub(crate) fn written_into(self, c: &mut [f32], ldc: usize, n: usize, m: usize) -> f32 {
        match self {
            Start::Beta(beta) => beta,
            Start::Bias(b) => {
                for r in 0..m {
                    c[r * ldc..r * ldc + n].copy_from_slice(&b[..n]);
                }
                1.0
            }
        }
    }
}

/// A read-only strided matrix view: element (i, j) is `data[i*rs + j*cs]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major `[rows, cols]` matrix.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Mat {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose (a view, nothing moves).
    pub fn t(self) -> Self {
        Mat {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// Rows `r0..r0+n` of the matrix.
    pub fn row_range(self, r0: usize, n: usize) -> Self {
        let start = (r0 * self.rs).min(self.data.len());
        Mat {
            data: &self.data[start..],
            rows: n,
            ..self
        }
    }

    /// Columns `c0..c0+n`.
    pub fn col_range(self, c0: usize, n: usize) -> Self {
        let start = (c0 * self.cs).min(self.data.len());
        Mat {
            data: &self.data[start..],
            cols: n,
            ..self
        }
    }

    pub(crate) fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// `c = a @ b + beta * c`, `c` row-major `[a.rows, b.cols]` with row stride `ldc`.
///
/// Shapes are the callers' invariants (validated at the kernel entry points); a mismatch is a
/// bug and panics rather than reading out of bounds.
pub(crate) fn gemm(a: Mat<'_>, b: Mat<'_>, c: &mut [f32], ldc: usize, beta: f32) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(a.fits() && b.fits() && b.rows == k, "gemm operand shapes");
    if m == 0 || n == 0 {
        return;
    }
    assert!((m - 1) * ldc + n <= c.len(), "gemm output shape");
    if k == 0 {
        c.iter_mut().for_each(|v| *v *= beta);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if m <= avx512::SMALL_M && a.cs == 1 && avx512::available() {
        // SAFETY: AVX-512F is present, the operands hold every element the product touches
        // (checked above), A's rows and B's columns (or rows) are contiguous, m is small.
        if b.rs == 1 {
            return unsafe { avx512::gemm_small(a, b, c, ldc, beta) };
        }
        if b.cs == 1 {
            return unsafe { avx512::gemm_small_rows(a, b, c, ldc, beta) };
        }
    }
    portable(a, b, c, ldc, beta);
}

/// [`gemm`] through `matrixmultiply`, with the same contract.
fn portable(a: Mat<'_>, b: Mat<'_>, c: &mut [f32], ldc: usize, beta: f32) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    // SAFETY: every index the product touches is inside the slices (checked by `gemm`); the
    // output does not alias the inputs (distinct borrows).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.as_mut_ptr(),
            ldc as isize,
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// The dispatched product (our AVX-512 kernels on this CPU when it has them) equals the
    /// portable one on every edge of the tiling: row tails, column tails, K blocks, both B
    /// layouts, a wide output stride and beta.
    #[test]
    fn dispatched_matches_portable() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for &m in &[1, 2, 4, 5, 12, 13, 37, 250] {
            for &k in &[1, 7, 256, 300, 600] {
                for &n in &[1, 5, 31, 32, 33, 70] {
                    for transposed in [false, true] {
                        for beta in [0.0, 1.0, 0.5] {
                            check(&mut rng, (m, k, n), transposed, beta);
                        }
                    }
                }
            }
        }
    }

    fn check(rng: &mut ChaCha8Rng, (m, k, n): (usize, usize, usize), transposed: bool, beta: f32) {
        let (a, b) = (random(rng, m * k), random(rng, k * n));
        let b_mat = if transposed {
            Mat::rows(&b, n, k).t()
        } else {
            Mat::rows(&b, k, n)
        };
        let ldc = n + 3;
        let c0 = random(rng, m * ldc);
        let (mut fast, mut slow) = (c0.clone(), c0.clone());
        gemm(Mat::rows(&a, m, k), b_mat, &mut fast, ldc, beta);
        portable(Mat::rows(&a, m, k), b_mat, &mut slow, ldc, beta);
        for i in 0..m {
            for j in 0..ldc {
                let (x, y) = (fast[i * ldc + j], slow[i * ldc + j]);
                let tol = if j < n { 1e-5 * k as f32 } else { 0.0 };
                assert!(
                    (x - y).abs() <= tol,
                    "m={m} k={k} n={n} t={transposed} beta={beta} at ({i},{j}): {x} vs {y}"
                );
            }
        }
    }
}
