//! The AVX-512 register tile behind [`super::panels::panels_gemm`].

use std::arch::x86_64::*;
use std::cell::RefCell;

use switchhead_ops::plan::PANEL;

use super::Mat;

/// Activation rows per register tile: 12 x 2 accumulators + 2 weight vectors + 1 broadcast.
const MR: usize = 12;
/// K block: a weight panel slice (KC x 32 floats, 64 KiB) streams from L2; larger blocks
/// measured no slower at our widths and read-modify-write C less often.
const KC: usize = 512;
/// Row block: its packed activations (MC x KC floats, 384 KiB) stay in L2.
const MC: usize = 192;

thread_local! {
    static PACKED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// See [`super::panels::panels_gemm`].
///
/// # Safety
/// AVX-512F is available; `a` has contiguous rows, `w` holds `ceil(n/32)*32*a.cols` floats
/// and `c` holds `(a.rows - 1) * ldc + n`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn panels_gemm(
    a: Mat<'_>,
    w: &[f32],
    n: usize,
    c: &mut [f32],
    ldc: usize,
    beta: f32,
) {
    let (m, k) = (a.rows, a.cols);
    PACKED.with_borrow_mut(|buf| {
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            let beta = if k0 == 0 { beta } else { 1.0 };
            for m0 in (0..m).step_by(MC) {
                let rows = MC.min(m - m0);
                pack_rows(a, m0, rows, k0, kc, buf);
                for p in 0..n.div_ceil(PANEL) {
                    let (lo, hi) = masks(PANEL.min(n - p * PANEL));
                    let panel = &w[p * k * PANEL + k0 * PANEL..];
                    for r in (0..rows).step_by(MR) {
                        let t = Tile {
                            a: buf[(r / MR) * kc * MR..].as_ptr(),
                            b: panel.as_ptr(),
                            kc,
                            // SAFETY: row m0 + r < m and column p * 32 < n are inside c.
                            c: unsafe { c.as_mut_ptr().add((m0 + r) * ldc + p * PANEL) },
                            ldc,
                            beta,
                            lo,
                            hi,
                        };
                        // SAFETY: the tile's operands hold what it reads and writes.
                        unsafe { t.run(MR.min(rows - r)) };
                    }
                }
            }
        }
    });
}

/// Packs rows `m0..m0+rows`, columns `k0..k0+kc` of `a` into 12-row panels, K-major inside:
/// element (r, kk) at `(r / 12) * kc * 12 + kk * 12 + r % 12`. Lanes of missing rows in the
/// last panel keep stale values; only the rows that exist are stored.
fn pack_rows(a: Mat<'_>, m0: usize, rows: usize, k0: usize, kc: usize, out: &mut Vec<f32>) {
    out.resize(rows.div_ceil(MR) * kc * MR, 0.0);
    for r in 0..rows {
        let src = &a.data[(m0 + r) * a.rs + k0..(m0 + r) * a.rs + k0 + kc];
        let panel = &mut out[(r / MR) * kc * MR + r % MR..];
        panel
            .iter_mut()
            .step_by(MR)
            .zip(src)
            .for_each(|(d, &v)| *d = v);
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

/// Up to 12 packed activation rows times one weight panel slice, into C.
struct Tile {
    a: *const f32,
    b: *const f32,
    kc: usize,
    c: *mut f32,
    ldc: usize,
    beta: f32,
    lo: u16,
    hi: u16,
}

impl Tile {
    #[target_feature(enable = "avx512f")]
    unsafe fn run(&self, rows: usize) {
        // SAFETY (all arms): the caller's contract on the tile's pointers.
        unsafe {
            match rows {
                12 => self.rows::<12>(),
                11 => self.rows::<11>(),
                10 => self.rows::<10>(),
                9 => self.rows::<9>(),
                8 => self.rows::<8>(),
                7 => self.rows::<7>(),
                6 => self.rows::<6>(),
                5 => self.rows::<5>(),
                4 => self.rows::<4>(),
                3 => self.rows::<3>(),
                2 => self.rows::<2>(),
                _ => self.rows::<1>(),
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn rows<const R: usize>(&self) {
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        // SAFETY: reads kc x 12 packed activations and kc x 32 panel floats; writes the
        // masked lanes of R rows of C.
        unsafe {
            for p in 0..self.kc {
                let b0 = _mm512_loadu_ps(self.b.add(p * PANEL));
                let b1 = _mm512_loadu_ps(self.b.add(p * PANEL + 16));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_ps(*self.a.add(p * MR + r));
                    acc[0] = _mm512_fmadd_ps(av, b0, acc[0]);
                    acc[1] = _mm512_fmadd_ps(av, b1, acc[1]);
                }
            }
            let beta = _mm512_set1_ps(self.beta);
            for (r, acc) in acc.iter().enumerate() {
                let cr = self.c.add(r * self.ldc);
                let (mut v0, mut v1) = (acc[0], acc[1]);
                if self.beta != 0.0 {
                    v0 = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(self.lo, cr), v0);
                    v1 = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(self.hi, cr.add(16)), v1);
                }
                _mm512_mask_storeu_ps(cr, self.lo, v0);
                _mm512_mask_storeu_ps(cr.add(16), self.hi, v1);
            }
        }
    }
}
