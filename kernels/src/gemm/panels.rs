//! Products against a weight stored in the `panels` layout (`switchhead_ops::plan::PANEL`
//! output rows per panel, input-major inside), which the compiler chose so that nothing is
//! packed at run time but the activations.
//!
//! With AVX-512F a register tile of up to 12 activation rows times one 32-column panel keeps
//! 24 accumulators in registers; the activations are packed per K block into 12-row panels
//! (rows * K copies against rows * K * out multiply-adds). Elsewhere each panel is a
//! `[in, 32]` row-major matrix for [`super::gemm`].

use switchhead_ops::plan::PANEL;

use super::{Mat, Start, gemm};

/// `c = a @ w^T + beta * c` or `c = a @ w^T + bias` ([`Start`]): `a` `[m, k]` with
/// contiguous rows, `w` the `panels` layout of an `[n, k]` weight (starting at a panel
/// boundary), `c` `[m, n]` at row stride `ldc`.
///
/// Shapes are the callers' invariants (validated at the kernel entry points); a mismatch is a
/// bug and panics rather than reading out of bounds.
pub(crate) fn panels_gemm(
    a: Mat<'_>,
    w: &[f32],
    n: usize,
    c: &mut [f32],
    ldc: usize,
    start: Start<'_>,
) {
    let (m, k) = (a.rows, a.cols);
    assert!(a.cs == 1 && a.fits(), "panels_gemm activations");
    assert!(
        w.len() >= n.div_ceil(PANEL) * PANEL * k,
        "panels_gemm weight"
    );
    if m == 0 || n == 0 {
        return;
    }
    assert!((m - 1) * ldc + n <= c.len(), "panels_gemm output");
    if let Start::Bias(b) = start {
        assert!(b.len() >= n, "panels_gemm bias");
    }
    #[cfg(target_arch = "x86_64")]
    if super::avx512::available() {
        // SAFETY: AVX-512F is present and every operand holds what the product touches
        // (checked above).
        return unsafe { super::tile512::panels_gemm(a, w, n, c, ldc, start) };
    }
    portable(a, w, n, c, ldc, start);
}

/// [`panels_gemm`] as one [`gemm`] per panel (a bias written into C first).
fn portable(a: Mat<'_>, w: &[f32], n: usize, c: &mut [f32], ldc: usize, start: Start<'_>) {
    let k = a.cols;
    let beta = start.written_into(c, ldc, n, a.rows);
    for p in 0..n.div_ceil(PANEL) {
        let cols = PANEL.min(n - p * PANEL);
        let panel = Mat {
            data: &w[p * k * PANEL..(p + 1) * k * PANEL],
            rows: k,
            cols,
            rs: PANEL,
            cs: 1,
        };
        gemm(a, panel, &mut c[p * PANEL..], ldc, beta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use switchhead_ops::plan::to_panels;

    /// Both panel paths (the AVX-512 tile where the CPU has it, and the per-panel product)
    /// equal the row-major product, across row tiles, row blocks, K blocks and column tails.
    #[test]
    fn panels_match_row_major() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for (m, k, n) in [(1, 5, 3), (13, 257, 33), (200, 40, 70), (25, 600, 64)] {
            let a: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let w: Vec<f32> = (0..n * k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let panels = to_panels(&w, n, k);
            let ldc = n + 2;
            let c0: Vec<f32> = (0..m * ldc).map(|_| rng.random_range(-1.0..1.0)).collect();
            let bias: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
            for start in [Start::Beta(0.0), Start::Beta(1.0), Start::Bias(&bias)] {
                let mut want = c0.clone();
                let beta = start.written_into(&mut want, ldc, n, m);
                super::super::portable(
                    Mat::rows(&a, m, k),
                    Mat::rows(&w, n, k).t(),
                    &mut want,
                    ldc,
                    beta,
                );
                let (mut fast, mut slow) = (c0.clone(), c0.clone());
                panels_gemm(Mat::rows(&a, m, k), &panels, n, &mut fast, ldc, start);
                portable(Mat::rows(&a, m, k), &panels, n, &mut slow, ldc, start);
                for (i, ((x, y), z)) in fast.iter().zip(&slow).zip(&want).enumerate() {
                    let tol = if i % ldc < n { 1e-5 * k as f32 } else { 0.0 };
                    assert!(
                        (x - z).abs() <= tol && (y - z).abs() <= tol,
                        "{m}x{k}x{n} at {i}"
                    );
                }
            }
        }
    }
}
