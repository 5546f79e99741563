//! What the AVX-512 paths share: the tiling of a call into row tiles times runs of panels,
//! and the tile's stores (`beta` or bias, masked column tails), as in `gemm::tile512`.
//!
//! A row tile of up to [`MR`] rows is prepared once (its activations quantized, rounded or
//! padded) and then goes through every panel of the call, `P` panels at a time: one row
//! keeps four panels' accumulators (independent chains while the weights stream from memory),
//! six rows one panel's (each weight vector used six times).

use std::arch::x86_64::*;
use std::ops::Range;

use switchhead_ops::plan::PANEL;

use super::PackedWeight;
use crate::gemm::{Mat, Start};

/// Rows per register tile (6 x 2 x 2 accumulators on the integer paths).
pub(super) const MR: usize = 6;

/// One [`super::packed_gemm`] call, shapes checked.
pub(super) struct Call<'a> {
    pub a: Mat<'a>,
    pub w: &'a PackedWeight,
    pub m: usize,
    pub cols: Range<usize>,
    pub ldc: usize,
    pub start: Start<'a>,
}

/// Where a tile's `R x P` panels of results go.
pub(super) struct Out {
    /// Row 0, the first column of the first panel.
    pub c: *mut f32,
    pub ldc: usize,
    pub beta: f32,
    /// The bias of the first column, if the call adds one.
    pub bias: Option<*const f32>,
    /// Lane masks of each panel's two halves.
    pub masks: [(u16, u16); 4],
}

/// A path's kernel: it prepares a row tile, then runs tiles over it.
pub(super) trait Kernel {
    /// Readies rows `r0..r0 + rows` (at most [`MR`]) of the activations.
    ///
    /// # Safety
    /// The CPU runs the kernel's target features.
    unsafe fn prepare(&mut self, a: Mat<'_>, r0: usize, rows: usize);

    /// The prepared rows times `take` panels from panel `p` (of the matrix) into `out`.
    ///
    /// # Safety
    /// The CPU runs the kernel's target features; `out` holds the tile's masked lanes.
    unsafe fn tile(&self, rows: usize, p: usize, take: usize, out: &Out);
}

/// Panels a tile of `rows` rows keeps in registers.
fn panels_per_tile(rows: usize) -> usize {
    match rows {
        1 => 4,
        2 | 3 => 2,
        _ => 1,
    }
}

/// Runs `kernel` over the call: row tiles, each through all panels.
///
/// # Safety
/// The CPU runs the kernel's target features; the call's shapes are checked.
pub(super) unsafe fn drive(t: &Call<'_>, c: &mut [f32], kernel: &mut impl Kernel) {
    let (n, p0) = (t.cols.len(), t.cols.start / PANEL);
    let (beta, bias) = match t.start {
        Start::Beta(beta) => (beta, None),
        Start::Bias(b) => (0.0, Some(b.as_ptr())),
    };
    for r0 in (0..t.a.rows).step_by(MR) {
        let rows = MR.min(t.a.rows - r0);
        // SAFETY: the caller's contract on the features.
        unsafe { kernel.prepare(t.a, r0, rows) };
        let (per, np) = (panels_per_tile(rows), n.div_ceil(PANEL));
        let mut p = 0;
        while p < np {
            let take = if np - p >= per { per } else { 1 };
            let out = Out {
                // SAFETY: row r0 < rows and column p * 32 < n lie inside c (checked shapes).
                c: unsafe { c.as_mut_ptr().add(r0 * t.ldc + p * PANEL) },
                ldc: t.ldc,
                beta,
                bias: bias.map(|b| b.wrapping_add(p * PANEL)),
                masks: std::array::from_fn(|q| masks(n.saturating_sub((p + q) * PANEL))),
            };
            // SAFETY: the tile's panels are the matrix's; `out` covers their valid columns.
            unsafe { kernel.tile(rows, p0 + p, take, &out) };
            p += take;
        }
    }
}

/// Lane masks of the two halves of a panel with `cols` valid columns.
fn masks(cols: usize) -> (u16, u16) {
    let mask = if cols >= PANEL {
        u32::MAX
    } else {
        (1u32 << cols) - 1
    };
    (mask as u16, (mask >> 16) as u16)
}

/// Stores a tile's accumulators: `c = acc + beta * c (+ bias)`, masked lanes only.
///
/// # Safety
/// AVX-512F is available; `out` holds the masked lanes of `R` rows and `P` panels.
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn store<const R: usize, const P: usize>(acc: &[[[__m512; 2]; P]; R], out: &Out) {
    // SAFETY: only the masked lanes are read and written (the caller's contract).
    unsafe {
        let keep = _mm512_set1_ps(out.beta);
        for q in 0..P {
            let (lo, hi) = out.masks[q];
            let (b0, b1) = match out.bias {
                None => (_mm512_setzero_ps(), _mm512_setzero_ps()),
                Some(b) => (
                    _mm512_maskz_loadu_ps(lo, b.add(q * PANEL)),
                    _mm512_maskz_loadu_ps(hi, b.add(q * PANEL + 16)),
                ),
            };
            for (r, acc) in acc.iter().enumerate() {
                let cr = out.c.add(r * out.ldc + q * PANEL);
                let (mut v0, mut v1) = (_mm512_add_ps(acc[q][0], b0), _mm512_add_ps(acc[q][1], b1));
                if out.beta != 0.0 {
                    v0 = _mm512_fmadd_ps(keep, _mm512_maskz_loadu_ps(lo, cr), v0);
                    v1 = _mm512_fmadd_ps(keep, _mm512_maskz_loadu_ps(hi, cr.add(16)), v1);
                }
                _mm512_mask_storeu_ps(cr, lo, v0);
                _mm512_mask_storeu_ps(cr.add(16), hi, v1);
            }
        }
    }
}

/// Calls `$f::<G.., R, P>($args)` (`G` the generics in brackets) for a tile of `$rows` rows and `$take` panels (the shapes
/// [`drive`] makes).
macro_rules! by_shape {
    ($rows:expr, $take:expr, $f:ident [$($g:tt),*] ($($arg:expr),*)) => {
        match ($rows, $take) {
            (1, 4) => $f::<$($g,)* 1, 4>($($arg),*),
            (1, _) => $f::<$($g,)* 1, 1>($($arg),*),
            (2, 2) => $f::<$($g,)* 2, 2>($($arg),*),
            (2, _) => $f::<$($g,)* 2, 1>($($arg),*),
            (3, 2) => $f::<$($g,)* 3, 2>($($arg),*),
            (3, _) => $f::<$($g,)* 3, 1>($($arg),*),
            (4, _) => $f::<$($g,)* 4, 1>($($arg),*),
            (5, _) => $f::<$($g,)* 5, 1>($($arg),*),
            _ => $f::<$($g,)* 6, 1>($($arg),*),
        }
    };
}
pub(super) use by_shape;
