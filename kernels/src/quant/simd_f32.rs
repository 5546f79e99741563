//! int8 and int4 on AVX-512F without VNNI: each weight value widened to f32 in registers
//! (the offset undone by an xor, the byte or nibble sign-extended by two shifts, converted
//! and scaled), then FMAs against f32 activations, so the results are those of f32 products
//! with the dequantized weights.

use std::arch::x86_64::*;
use std::cell::RefCell;

use switchhead_ops::plan::PANEL;

use super::layout::{Geom, STEP};
use super::simd::{Call, Kernel, Out, by_shape, drive, store};
use super::{PackedKind, PackedWeight};
use crate::gemm::Mat;

thread_local! {
    /// A row tile's activations, `[rows, padded_k]`, padding zero.
    static ACTS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

struct Widen<'a> {
    w: &'a PackedWeight,
    m: usize,
    acts: &'a mut Vec<f32>,
}

/// See [`super::packed_gemm`].
///
/// # Safety
/// The CPU runs AVX-512F, BW and VL; the call's shapes are checked.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn gemm(t: &Call<'_>, c: &mut [f32]) {
    ACTS.with_borrow_mut(|acts| {
        let mut k = Widen {
            w: t.w,
            m: t.m,
            acts,
        };
        // SAFETY: the caller's contract.
        unsafe { drive(t, c, &mut k) }
    });
}

/// Copies rows `r0..r0 + rows` of `a` into `out` at the padded K positions of `g`.
pub(super) fn pad_rows(a: Mat<'_>, r0: usize, rows: usize, g: &Geom, out: &mut Vec<f32>) {
    let kp = g.padded_k();
    out.clear();
    out.resize(rows * kp, 0.0);
    for r in 0..rows {
        let x = &a.data[(r0 + r) * a.rs..][..a.cols];
        for b in 0..g.blocks {
            let (k0, len, s0) = g.block_at(b, a.cols);
            out[r * kp + s0 * g.per..][..len].copy_from_slice(&x[k0..k0 + len]);
        }
    }
}

impl Kernel for Widen<'_> {
    unsafe fn prepare(&mut self, a: Mat<'_>, r0: usize, rows: usize) {
        pad_rows(a, r0, rows, &self.w.geom, self.acts);
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn tile(&self, rows: usize, p: usize, take: usize, out: &Out) {
        let (w, g) = (self.w, self.w.geom);
        let t = Tile {
            w: w.data[w.panel_offset(self.m, p)..].as_ptr(),
            pstride: g.panel_bytes(),
            ws: w.scales[w.scale_offset(self.m, p)..].as_ptr(),
            wsstride: g.blocks * PANEL,
            x: self.acts.as_ptr(),
            kp: g.padded_k(),
            g,
        };
        // SAFETY: the tile's panels and rows exist (the caller's contract).
        unsafe {
            match w.kind {
                PackedKind::Int4 { .. } => by_shape!(rows, take, tile[true](&t, out)),
                _ => by_shape!(rows, take, tile[false](&t, out)),
            }
        }
    }
}

/// One tile's operands: panels from `w` (stride `pstride` bytes), their scales from `ws`,
/// padded activation rows from `x` (stride `kp`).
struct Tile {
    w: *const u8,
    pstride: usize,
    ws: *const f32,
    wsstride: usize,
    x: *const f32,
    kp: usize,
    g: Geom,
}

/// An int8 (`NIB` false: 4 bytes per lane and step) or int4 (8 nibbles, K 0..4 low) tile.
///
/// # Safety
/// The CPU runs AVX-512F; the tile's `P` panels and `R` rows exist; `out` holds their masked
/// lanes.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn tile<const NIB: bool, const R: usize, const P: usize>(t: &Tile, out: &Out) {
    let (g, per) = (t.g, if NIB { 8 } else { 4 });
    let flip = _mm512_set1_epi32(if NIB {
        0x8888_8888u32 as i32
    } else {
        0x8080_8080u32 as i32
    });
    // value j sits at bit 8j (int8), or 8(j % 4) + 4(j / 4) (int4); shifted to the top
    let left: [__m512i; 8] = std::array::from_fn(|j| {
        let (bits, pos) = if NIB {
            (4, 8 * (j % 4) + 4 * (j / 4))
        } else {
            (8, 8 * (j % 4))
        };
        _mm512_set1_epi32((32 - bits - pos) as i32)
    });
    let mut acc = [[[_mm512_setzero_ps(); 2]; P]; R];
    for b in 0..g.blocks {
        // SAFETY: the scales hold block b of the tile's panels.
        let ws: [[__m512; 2]; P] = std::array::from_fn(|q| unsafe {
            let at = t.ws.add(q * t.wsstride + b * PANEL);
            [_mm512_loadu_ps(at), _mm512_loadu_ps(at.add(16))]
        });
        for s in b * g.bsteps..((b + 1) * g.bsteps).min(g.steps) {
            for q in 0..P {
                // SAFETY: step s of each panel and activations per*s.. of each row exist.
                unsafe {
                    let wp = t.w.add(q * t.pstride + s * STEP);
                    let w = [
                        _mm512_xor_si512(_mm512_loadu_si512(wp as *const __m512i), flip),
                        _mm512_xor_si512(_mm512_loadu_si512(wp.add(64) as *const __m512i), flip),
                    ];
                    for (j, left) in left.iter().enumerate().take(per) {
                        let d: [__m512; 2] = std::array::from_fn(|h| {
                            let v = _mm512_sllv_epi32(w[h], *left);
                            let v = match NIB {
                                true => _mm512_srai_epi32::<28>(v),
                                false => _mm512_srai_epi32::<24>(v),
                            };
                            _mm512_mul_ps(_mm512_cvtepi32_ps(v), ws[q][h])
                        });
                        for (r, acc) in acc.iter_mut().enumerate() {
                            let x = _mm512_set1_ps(*t.x.add(r * t.kp + s * per + j));
                            acc[q][0] = _mm512_fmadd_ps(x, d[0], acc[q][0]);
                            acc[q][1] = _mm512_fmadd_ps(x, d[1], acc[q][1]);
                        }
                    }
                }
            }
        }
    }
    // SAFETY: the caller's contract on `out`.
    unsafe { store(&acc, out) };
}
