//! bf16 through AVX-512 BF16: each row tile's activations rounded to bf16 (`vcvtne2ps2bf16`,
//! nearest even), K pairs of them broadcast against a step's 32 columns x 2 weights and
//! accumulated in f32 by `vdpbf16ps`.

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::PackedWeight;
use super::layout::STEP;
use super::simd::{Call, Kernel, Out, by_shape, drive, store};
use crate::gemm::Mat;

thread_local! {
    /// A row tile's activations as bf16, `[rows, padded_k]`, padding zero.
    static ACTS: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
}

struct Bf16<'a> {
    w: &'a PackedWeight,
    m: usize,
    acts: &'a mut Vec<u16>,
}

/// See [`super::packed_gemm`].
///
/// # Safety
/// The CPU runs AVX-512F, BW, VL and BF16; the call's shapes are checked.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
pub(super) unsafe fn gemm(t: &Call<'_>, c: &mut [f32]) {
    ACTS.with_borrow_mut(|acts| {
        let mut k = Bf16 {
            w: t.w,
            m: t.m,
            acts,
        };
        // SAFETY: the caller's contract.
        unsafe { drive(t, c, &mut k) }
    });
}

impl Kernel for Bf16<'_> {
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn prepare(&mut self, a: Mat<'_>, r0: usize, rows: usize) {
        let kp = self.w.geom.padded_k();
        self.acts.clear();
        self.acts.resize(rows * kp, 0);
        for r in 0..rows {
            let x = &a.data[(r0 + r) * a.rs..][..a.cols];
            // SAFETY: the features of this function.
            unsafe { round_row(x, &mut self.acts[r * kp..][..kp]) };
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn tile(&self, rows: usize, p: usize, take: usize, out: &Out) {
        let (w, g) = (self.w, self.w.geom);
        let t = Tile {
            w: w.data[w.panel_offset(self.m, p)..].as_ptr(),
            pstride: g.panel_bytes(),
            x: self.acts.as_ptr(),
            kp: g.padded_k(),
            steps: g.steps,
        };
        // SAFETY: the tile's panels and rows exist (the caller's contract).
        unsafe { by_shape!(rows, take, tile[](&t, out)) }
    }
}

/// `out[..x.len()] = bf16(x)`, 32 at a time.
///
/// # Safety
/// The CPU runs AVX-512F, BW and BF16; `out` holds `x.len()` values.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn round_row(x: &[f32], out: &mut [u16]) {
    assert!(out.len() >= x.len());
    for i in (0..x.len()).step_by(32) {
        let live = (x.len() - i).min(32);
        let mask = if live == 32 {
            u32::MAX
        } else {
            (1u32 << live) - 1
        };
        // SAFETY: the loads and the store touch lanes below x.len() (masked).
        unsafe {
            let lo = _mm512_maskz_loadu_ps(mask as u16, x.as_ptr().add(i));
            let hi = _mm512_maskz_loadu_ps((mask >> 16) as u16, x.as_ptr().add(i + 16));
            let v: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
            _mm512_mask_storeu_epi16(out.as_mut_ptr().add(i) as *mut i16, mask, v);
        }
    }
}

/// One tile's operands: panels from `w` (stride `pstride` bytes), bf16 activation rows from
/// `x` (stride `kp`).
struct Tile {
    w: *const u8,
    pstride: usize,
    x: *const u16,
    kp: usize,
    steps: usize,
}

/// `R` rows times `P` panels, 2 K values a step.
///
/// # Safety
/// The CPU runs AVX-512F and BF16; the tile's `P` panels and `R` rows exist; `out` holds
/// their masked lanes.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn tile<const R: usize, const P: usize>(t: &Tile, out: &Out) {
    let mut acc = [[[_mm512_setzero_ps(); 2]; P]; R];
    for s in 0..t.steps {
        for q in 0..P {
            // SAFETY: step s of each panel and activations 2s, 2s + 1 of each row exist;
            // __m512i and __m512bh are both 64 bytes of plain lanes.
            unsafe {
                let wp = t.w.add(q * t.pstride + s * STEP);
                let w: [__m512bh; 2] = [
                    std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                        wp as *const __m512i,
                    )),
                    std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                        wp.add(64) as *const __m512i
                    )),
                ];
                for (r, acc) in acc.iter_mut().enumerate() {
                    let pair = std::ptr::read_unaligned(t.x.add(r * t.kp + 2 * s) as *const i32);
                    let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                    acc[q][0] = _mm512_dpbf16_ps(acc[q][0], w[0], x);
                    acc[q][1] = _mm512_dpbf16_ps(acc[q][1], w[1], x);
                }
            }
        }
    }
    // SAFETY: the caller's contract on `out`.
    unsafe { store(&acc, out) };
}
