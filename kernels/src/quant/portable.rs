//! The portable product: each panel widened to f32 once per call ([`PackedWeight::decode_panel`]),
//! then plain loops over the rows that the compiler vectorizes. Every CPU runs it; the
//! tests hold the fast paths to it.

use std::cell::RefCell;
use std::ops::Range;

use switchhead_ops::plan::PANEL;

use super::PackedWeight;
use crate::gemm::{Mat, Start};

thread_local! {
    static DECODED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// See [`super::packed_gemm`] (shapes checked there).
pub(super) fn gemm(
    a: Mat<'_>,
    w: &PackedWeight,
    m: usize,
    cols: Range<usize>,
    c: &mut [f32],
    ldc: usize,
    start: Start<'_>,
) {
    let n = cols.len();
    let beta = start.written_into(c, ldc, n, a.rows);
    DECODED.with_borrow_mut(|panel| {
        for j0 in (0..n).step_by(PANEL) {
            w.decode_panel(m, (cols.start + j0) / PANEL, panel);
            let width = PANEL.min(n - j0);
            for r in 0..a.rows {
                let acc = row_times_panel(&a.data[r * a.rs..][..a.cols], panel);
                let out = &mut c[r * ldc + j0..][..width];
                for (o, &v) in out.iter_mut().zip(&acc) {
                    *o = if beta == 0.0 { v } else { v + beta * *o };
                }
            }
        }
    });
}

/// `x @ panel` for one activation row `x` against an `[x.len(), 32]` panel.
fn row_times_panel(x: &[f32], panel: &[f32]) -> [f32; PANEL] {
    let mut acc = [0f32; PANEL];
    for (&xk, wk) in x.iter().zip(panel.chunks_exact(PANEL)) {
        for (a, &wv) in acc.iter_mut().zip(wk) {
            *a += xk * wv;
        }
    }
    acc
}
