//! int8 and int4 through AVX-512 VNNI: each row tile's activations are quantized to signed
//! bytes per row and block (scale `max|x| / 127`, round to nearest), `vpdpbusd` multiplies
//! the stored unsigned weights (`q + 128` or `q + 8`) by them into i32 accumulators, which
//! start each block at `-offset * sum(x_q)` (so they end at the exact `sum(q * x_q)`) and are
//! then scaled into f32 accumulators: `acc += i32 * (w_scale * x_scale)`.

use std::arch::x86_64::*;
use std::cell::RefCell;

use switchhead_ops::plan::PANEL;

use super::layout::{Geom, STEP};
use super::simd::{Call, Kernel, Out, by_shape, drive, store};
use super::{PackedKind, PackedWeight};
use crate::gemm::Mat;

/// A row tile's quantized activations.
#[derive(Default)]
struct Acts {
    /// `[rows, padded_k]` bytes, padding zero.
    q: Vec<i8>,
    /// `[rows, blocks]` scales.
    scale: Vec<f32>,
    /// `[rows, blocks]`: the weights' offset times the block's sum of quantized values.
    comp: Vec<i32>,
}

thread_local! {
    static ACTS: RefCell<Acts> = RefCell::new(Acts::default());
}

struct Vnni<'a> {
    w: &'a PackedWeight,
    m: usize,
    acts: &'a mut Acts,
}

/// See [`super::packed_gemm`].
///
/// # Safety
/// The CPU runs AVX-512F, BW, VL and VNNI; the call's shapes are checked.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn gemm(t: &Call<'_>, c: &mut [f32]) {
    ACTS.with_borrow_mut(|acts| {
        let mut k = Vnni {
            w: t.w,
            m: t.m,
            acts,
        };
        // SAFETY: the caller's contract.
        unsafe { drive(t, c, &mut k) }
    });
}

impl Kernel for Vnni<'_> {
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn prepare(&mut self, a: Mat<'_>, r0: usize, rows: usize) {
        let (g, kp) = (self.w.geom, self.w.geom.padded_k());
        let offset = match self.w.kind {
            PackedKind::Int4 { .. } => 8,
            _ => 128,
        };
        let acts = &mut *self.acts;
        acts.q.clear();
        acts.q.resize(rows * kp, 0);
        acts.scale.resize(rows * g.blocks, 0.0);
        acts.comp.resize(rows * g.blocks, 0);
        for r in 0..rows {
            let x = &a.data[(r0 + r) * a.rs..][..a.cols];
            let q = &mut acts.q[r * kp..][..kp];
            let (scale, comp) = (
                &mut acts.scale[r * g.blocks..][..g.blocks],
                &mut acts.comp[r * g.blocks..][..g.blocks],
            );
            for b in 0..g.blocks {
                let (k0, len, s0) = g.block_at(b, a.cols);
                // SAFETY: the features of this function.
                let (s, sum) = unsafe { quantize(&x[k0..k0 + len], &mut q[s0 * g.per..]) };
                (scale[b], comp[b]) = (s, offset * sum);
            }
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn tile(&self, rows: usize, p: usize, take: usize, out: &Out) {
        let (w, g) = (self.w, self.w.geom);
        let t = Tile {
            w: w.data[w.panel_offset(self.m, p)..].as_ptr(),
            pstride: g.panel_bytes(),
            ws: w.scales[w.scale_offset(self.m, p)..].as_ptr(),
            wsstride: g.blocks * PANEL,
            acts: &*self.acts,
            kp: g.padded_k(),
            g,
        };
        // SAFETY: the tile's panels and rows exist (the caller's contract).
        unsafe {
            match w.kind {
                PackedKind::Int4 { .. } => by_shape!(rows, take, tile4[](&t, out)),
                _ => by_shape!(rows, take, tile8[](&t, out)),
            }
        }
    }
}

/// Quantizes `x` into `q[..x.len()]`: returns the scale and the sum of the values.
///
/// # Safety
/// The CPU runs AVX-512F, BW and VL; `q` holds `x.len()` bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn quantize(x: &[f32], q: &mut [i8]) -> (f32, i32) {
    assert!(q.len() >= x.len());
    let chunks = || {
        (0..x.len())
            .step_by(16)
            .map(|i| (i, ((1u32 << (x.len() - i).min(16)) - 1) as u16))
    };
    // SAFETY: every load and store touches lanes below x.len() (masked), inside x and q.
    unsafe {
        let mut max = _mm512_setzero_ps();
        for (i, mask) in chunks() {
            let v = _mm512_maskz_loadu_ps(mask, x.as_ptr().add(i));
            max = _mm512_max_ps(max, _mm512_abs_ps(v));
        }
        let max = _mm512_reduce_max_ps(max);
        if max == 0.0 || !max.is_finite() {
            return (0.0, 0);
        }
        let inv = _mm512_set1_ps(127.0 / max);
        let mut sum = _mm512_setzero_si512();
        for (i, mask) in chunks() {
            let v = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, x.as_ptr().add(i)), inv);
            let qi = _mm512_cvtps_epi32(v);
            sum = _mm512_add_epi32(sum, qi);
            _mm_mask_storeu_epi8(q.as_mut_ptr().add(i), mask, _mm512_cvtsepi32_epi8(qi));
        }
        (max / 127.0, _mm512_reduce_add_epi32(sum))
    }
}

/// One tile's operands: panels from `w` (stride `pstride` bytes), their scales from `ws`.
struct Tile<'a> {
    w: *const u8,
    pstride: usize,
    ws: *const f32,
    wsstride: usize,
    acts: &'a Acts,
    kp: usize,
    g: Geom,
}

impl Tile<'_> {
    /// The 4 activation bytes at byte `at` of row `r`, broadcast.
    ///
    /// # Safety
    /// AVX-512F is available; row `r` holds bytes `at..at + 4`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn x4(&self, r: usize, at: usize) -> __m512i {
        // SAFETY: the caller's contract.
        unsafe {
            let p = self.acts.q.as_ptr().add(r * self.kp + at);
            _mm512_set1_epi32(std::ptr::read_unaligned(p as *const i32))
        }
    }

    /// Block `b`'s i32 accumulators, started at minus the offset times the sums.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn start<const R: usize, const P: usize>(&self, b: usize) -> [[[__m512i; 2]; P]; R] {
        std::array::from_fn(|r| [[_mm512_set1_epi32(-self.acts.comp[r * self.g.blocks + b]); 2]; P])
    }

    /// `acc += i32 * (w_scale * x_scale)` at the end of block `b`.
    ///
    /// # Safety
    /// AVX-512F is available; the tile's scales hold block `b` of its `P` panels.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn scale<const R: usize, const P: usize>(
        &self,
        b: usize,
        iacc: &[[[__m512i; 2]; P]; R],
        acc: &mut [[[__m512; 2]; P]; R],
    ) {
        for q in 0..P {
            // SAFETY: the caller's contract on the scales.
            let ws = unsafe {
                let at = self.ws.add(q * self.wsstride + b * PANEL);
                [_mm512_loadu_ps(at), _mm512_loadu_ps(at.add(16))]
            };
            for r in 0..R {
                let xs = _mm512_set1_ps(self.acts.scale[r * self.g.blocks + b]);
                for h in 0..2 {
                    let f = _mm512_cvtepi32_ps(iacc[r][q][h]);
                    acc[r][q][h] = _mm512_fmadd_ps(f, _mm512_mul_ps(ws[h], xs), acc[r][q][h]);
                }
            }
        }
    }
}

/// An int8 tile: each step is 4 K values of 32 columns.
///
/// # Safety
/// The CPU runs AVX-512F and VNNI; the tile's `P` panels and `R` rows exist; `out` holds
/// their masked lanes.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile8<const R: usize, const P: usize>(t: &Tile<'_>, out: &Out) {
    let g = t.g;
    let mut acc = [[[_mm512_setzero_ps(); 2]; P]; R];
    for b in 0..g.blocks {
        let mut iacc = t.start::<R, P>(b);
        for s in b * g.bsteps..((b + 1) * g.bsteps).min(g.steps) {
            // SAFETY: step s of each panel and bytes 4s..4s+4 of each row exist.
            unsafe {
                for q in 0..P {
                    let wp = t.w.add(q * t.pstride + s * STEP);
                    let w0 = _mm512_loadu_si512(wp as *const __m512i);
                    let w1 = _mm512_loadu_si512(wp.add(64) as *const __m512i);
                    for (r, iacc) in iacc.iter_mut().enumerate() {
                        let x = t.x4(r, s * 4);
                        iacc[q][0] = _mm512_dpbusd_epi32(iacc[q][0], w0, x);
                        iacc[q][1] = _mm512_dpbusd_epi32(iacc[q][1], w1, x);
                    }
                }
            }
        }
        // SAFETY: the scales hold every block of the tile's panels.
        unsafe { t.scale(b, &iacc, &mut acc) };
    }
    // SAFETY: the caller's contract on `out`.
    unsafe { store(&acc, out) };
}

/// An int4 tile: each step is 8 K values of 32 columns, the low nibbles K 0..4, the high
/// nibbles K 4..8.
///
/// # Safety
/// As [`tile8`].
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile4<const R: usize, const P: usize>(t: &Tile<'_>, out: &Out) {
    let (g, low) = (t.g, _mm512_set1_epi8(0x0f));
    let mut acc = [[[_mm512_setzero_ps(); 2]; P]; R];
    for b in 0..g.blocks {
        let mut iacc = t.start::<R, P>(b);
        for s in b * g.bsteps..((b + 1) * g.bsteps).min(g.steps) {
            // SAFETY: step s of each panel and bytes 8s..8s+8 of each row exist.
            unsafe {
                for q in 0..P {
                    let wp = t.w.add(q * t.pstride + s * STEP);
                    let w = [
                        _mm512_loadu_si512(wp as *const __m512i),
                        _mm512_loadu_si512(wp.add(64) as *const __m512i),
                    ];
                    let lo = [_mm512_and_si512(w[0], low), _mm512_and_si512(w[1], low)];
                    let hi = [
                        _mm512_and_si512(_mm512_srli_epi16::<4>(w[0]), low),
                        _mm512_and_si512(_mm512_srli_epi16::<4>(w[1]), low),
                    ];
                    for (r, iacc) in iacc.iter_mut().enumerate() {
                        let (xl, xh) = (t.x4(r, s * 8), t.x4(r, s * 8 + 4));
                        for h in 0..2 {
                            iacc[q][h] = _mm512_dpbusd_epi32(iacc[q][h], lo[h], xl);
                            iacc[q][h] = _mm512_dpbusd_epi32(iacc[q][h], hi[h], xh);
                        }
                    }
                }
            }
        }
        // SAFETY: the scales hold every block of the tile's panels.
        unsafe { t.scale(b, &iacc, &mut acc) };
    }
    // SAFETY: the caller's contract on `out`.
    unsafe { store(&acc, out) };
}
