//! The AVX-512 register tile behind [`super::panels::panels_gemm`] (activations packed) and
//! the grouped expert products (activations read in place).

use std::arch::x86_64::*;
use std::cell::RefCell;

use switchhead_ops::plan::PANEL;

use super::grouped::Slots;
use super::{Mat, Start};

/// Activation rows per register tile: 12 x 2 accumulators + 2 weight vectors + 1 broadcast.
const MR: usize = 12;
/// K block: a weight panel slice (KC x 32 floats, 64 KiB) streams from L2; larger blocks
/// measured no slower at our widths and read-modify-write C less often. (Re-measured on the
/// `c4-47m` FFN, medians of 15 alternated runs: KC 192, 256, 384 and 512, and K split into
/// equal blocks, all within 3%.)
const KC: usize = 512;
/// Row block: its packed activations (MC x KC floats, 384 KiB) stay in L2 while it goes
/// through every panel.
const MC: usize = 192;
/// K steps a tile asks for its weight panel ahead of the products (3 KiB). On the FFN shapes
/// at 384 rows, 8, 16, 24 and 48 measured the same; where the weights stream from memory
/// (decode: 1 to 12 rows against all 16 layers' FFN weights) 24 to 96 read 9-15% faster
/// than 8 (26-28 GB/s at one row), in alternated runs in one process.
const PREFETCH: usize = 24;
/// Weight bytes per K block of the panels a grouped product's row tile goes through before
/// the next tile takes them (from L2, which holds 2 MiB here): all of an O expert's at
/// `d_model` 1024 and K 112 (448 KiB), a V expert's four panels at K 512 (256 KiB).
const GROUPED_RUN_BYTES: usize = 512 * 1024;

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
    start: Start<'_>,
) {
    let (m, k) = (a.rows, a.cols);
    PACKED.with_borrow_mut(|buf| {
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            // the first K block starts C as asked, the later ones add to it
            let (beta, bias) = match start {
                _ if k0 > 0 => (1.0, None),
                Start::Beta(beta) => (beta, None),
                Start::Bias(b) => (0.0, Some(b.as_ptr())),
            };
            for m0 in (0..m).step_by(MC) {
                let rows = MC.min(m - m0);
                pack(rows, kc, |r| &a.data[(m0 + r) * a.rs + k0..], buf);
                for p in 0..n.div_ceil(PANEL) {
                    let (lo, hi) = masks(PANEL.min(n - p * PANEL));
                    let panel = &w[p * k * PANEL + k0 * PANEL..];
                    for r in (0..rows).step_by(MR) {
                        let t = Tile {
                            a: TileA::Packed(buf[(r / MR) * kc * MR..].as_ptr()),
                            b: panel.as_ptr(),
                            kc,
                            // SAFETY: row m0 + r < m and column p * 32 < n are inside c.
                            out: TileOut::Rows {
                                c: unsafe { c.as_mut_ptr().add((m0 + r) * ldc + p * PANEL) },
                                ldc,
                                beta,
                                bias: bias.map(|b| b.wrapping_add(p * PANEL)),
                            },
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

/// See [`super::grouped::grouped_gemm`]: one expert's slots times panels `panels` of its
/// weight `w` (`[n, k]` in panels), `out[dst[i] + col] += gate[i] * product(i, col)`.
///
/// The tile reads each slot's input row where it lies instead of packing it: an expert's
/// output is narrow (V: d_head columns, one to three panels), so a packed copy would be used
/// once or twice, and copying cost as much as a panel's products (the V experts measured about
/// 12% faster unpacked at `c4-47m` batch 8; O neutral). Each tile of 12 slots goes through a
/// run of the expert's panels ([`GROUPED_RUN_BYTES`] of weights per K block, which stay in L2
/// while every tile reads them), so its rows stay in L1 across the run. Against taking a
/// block of 192 slots through one panel after another (rows from L2, the panel slice from
/// L1), the O experts at `c4-262m` / `switchall-259m`'s seq 512 shape measured 10-15% faster
/// (medians of 11 in 4 alternated rounds, three runs), at `c4-47m` batch 8 0-13%; the V
/// experts even to 4%; `switchall-259m`'s σ-MoE layer about 3%.
///
/// # Safety
/// AVX-512F is available; `x[src[i]..src[i] + k]` exists for every slot; `w` holds
/// `ceil(n/32)*32*k` floats; `out + dst[i] + col` is valid for every slot and column
/// `col < n` of the panels, and no other thread touches those elements during the call.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn grouped_panels(
    x: &[f32],
    slots: Slots<'_>,
    (w, k, n): (&[f32], usize, usize),
    panels: std::ops::Range<usize>,
    out: *mut f32,
) {
    let m = slots.src.len();
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        let run = (GROUPED_RUN_BYTES / (kc * PANEL * size_of::<f32>())).max(1);
        for p0 in panels.clone().step_by(run) {
            let run = p0..(p0 + run).min(panels.end);
            for r in (0..m).step_by(MR) {
                let live = MR.min(m - r);
                let (mut a, mut dst, mut gates) = ([std::ptr::null(); MR], [0; MR], [1f32; MR]);
                for j in 0..live {
                    a[j] = x[slots.src[r + j] + k0..].as_ptr();
                    dst[j] = slots.dst[r + j];
                    gates[j] = slots.gate.map_or(1.0, |g| g[r + j]);
                }
                for p in run.clone() {
                    let (lo, hi) = masks(PANEL.min(n - p * PANEL));
                    // SAFETY (the rows that exist): the caller's contract on dst.
                    let ptrs = std::array::from_fn(|j| match j < live {
                        true => unsafe { out.add(dst[j] + p * PANEL) },
                        false => std::ptr::null_mut(),
                    });
                    let t = Tile {
                        a: TileA::Rows(a),
                        b: w[p * k * PANEL + k0 * PANEL..].as_ptr(),
                        kc,
                        out: TileOut::Scatter { ptrs, gates },
                        lo,
                        hi,
                    };
                    // SAFETY: the tile's operands hold what it reads and writes (rows past
                    // `live` are not read or written).
                    unsafe { t.run(live) };
                }
            }
        }
    }
}

/// Packs `kc` columns of `rows` activation rows (`row(r)` starts at the first of them) into
/// 12-row panels, K-major inside: element (r, kk) at `(r / 12) * kc * 12 + kk * 12 + r % 12`.
/// Lanes of missing rows in the last panel keep stale values; only the rows that exist are
/// stored.
fn pack<'a>(rows: usize, kc: usize, row: impl Fn(usize) -> &'a [f32], out: &mut Vec<f32>) {
    out.resize(rows.div_ceil(MR) * kc * MR, 0.0);
    for (p, panel) in out.chunks_exact_mut(kc * MR).enumerate() {
        let live = MR.min(rows - p * MR);
        if live == MR {
            // a full panel: 12 source rows read side by side, the panel written in order
            let src: [&[f32]; MR] = std::array::from_fn(|j| &row(p * MR + j)[..kc]);
            for (kk, dst) in panel.chunks_exact_mut(MR).enumerate() {
                for (d, s) in dst.iter_mut().zip(&src) {
                    *d = s[kk];
                }
            }
        } else {
            for j in 0..live {
                let src = &row(p * MR + j)[..kc];
                for (d, &v) in panel[j..].iter_mut().step_by(MR).zip(src) {
                    *d = v;
                }
            }
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

/// Where a tile's rows go.
enum TileOut {
    /// `c[r * ldc + j] = acc + beta * c[r * ldc + j] (+ bias[j])`.
    Rows {
        c: *mut f32,
        ldc: usize,
        beta: f32,
        bias: Option<*const f32>,
    },
    /// `ptrs[r][j] += gates[r] * acc` (routed slots, each row its own destination).
    Scatter {
        ptrs: [*mut f32; MR],
        gates: [f32; MR],
    },
}

/// Where a tile reads its activations (R of them, R the tile's row count).
#[derive(Clone, Copy)]
enum TileA {
    /// A packed 12-row panel: element (r, p) at `a[p * 12 + r]`.
    Packed(*const f32),
    /// Each row where it lies: element (r, p) at `rows[r][p]`.
    Rows([*const f32; MR]),
}

/// Up to 12 activation rows times one weight panel slice, into C.
struct Tile {
    a: TileA,
    b: *const f32,
    kc: usize,
    out: TileOut,
    lo: u16,
    hi: u16,
}

impl Tile {
    /// Runs the tile on its first `rows` rows; a panel whose valid columns all sit in its
    /// first half (a tail of at most 16, as d_head 76's third panel) computes only that half.
    #[target_feature(enable = "avx512f")]
    unsafe fn run(&self, rows: usize) {
        // SAFETY: the caller's contract on the tile's pointers.
        unsafe {
            match self.hi {
                0 => self.run_width::<false>(rows),
                _ => self.run_width::<true>(rows),
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn run_width<const WIDE: bool>(&self, rows: usize) {
        // SAFETY (all arms): the caller's contract on the tile's pointers.
        unsafe {
            match rows {
                12 => self.rows::<12, WIDE>(),
                11 => self.rows::<11, WIDE>(),
                10 => self.rows::<10, WIDE>(),
                9 => self.rows::<9, WIDE>(),
                8 => self.rows::<8, WIDE>(),
                7 => self.rows::<7, WIDE>(),
                6 => self.rows::<6, WIDE>(),
                5 => self.rows::<5, WIDE>(),
                4 => self.rows::<4, WIDE>(),
                3 => self.rows::<3, WIDE>(),
                2 => self.rows::<2, WIDE>(),
                _ => self.rows::<1, WIDE>(),
            }
        }
    }

    /// `WIDE`: both halves of the panel; else the first 16 columns only (the second half's
    /// accumulators stay zero and its lanes are masked off).
    #[target_feature(enable = "avx512f")]
    unsafe fn rows<const R: usize, const WIDE: bool>(&self) {
        // SAFETY: the caller's contract on the tile's pointers.
        unsafe {
            match self.a {
                TileA::Packed(a) => self.rows_from::<R, WIDE, true>(a, &[std::ptr::null(); MR]),
                TileA::Rows(rows) => self.rows_from::<R, WIDE, false>(std::ptr::null(), &rows),
            }
        }
    }

    /// The tile reading its activations packed at `a` (`PACKED`) or from `rows`. One body
    /// from the products to the stores keeps the accumulators in registers (a product
    /// returned to a shared store went through the stack).
    #[target_feature(enable = "avx512f")]
    unsafe fn rows_from<const R: usize, const WIDE: bool, const PACKED: bool>(
        &self,
        a: *const f32,
        rows: &[*const f32; MR],
    ) {
        let (b, kc) = (self.b, self.kc);
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        // SAFETY: reads kc x 32 panel floats and kc activations of each of the R rows (the
        // caller's contract); writes the masked lanes of R output rows.
        unsafe {
            let a_at = |p: usize, r: usize| {
                if PACKED {
                    *a.add(p * MR + r)
                } else {
                    *rows[r].add(p)
                }
            };
            for p in 0..kc {
                // The panel streams from L2 (64 KiB at KC 512, more than L1 holds) or memory;
                // asking for it PREFETCH steps ahead measured 10-15% faster on the FFN shapes.
                // The addresses past the panel's end are hints, never dereferenced.
                let ahead = b.wrapping_add((p + PREFETCH) * PANEL) as *const i8;
                _mm_prefetch::<_MM_HINT_T0>(ahead);
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
                let b0 = _mm512_loadu_ps(b.add(p * PANEL));
                if WIDE {
                    let b1 = _mm512_loadu_ps(b.add(p * PANEL + 16));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let av = _mm512_set1_ps(a_at(p, r));
                        acc[0] = _mm512_fmadd_ps(av, b0, acc[0]);
                        acc[1] = _mm512_fmadd_ps(av, b1, acc[1]);
                    }
                } else {
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let av = _mm512_set1_ps(a_at(p, r));
                        acc[0] = _mm512_fmadd_ps(av, b0, acc[0]);
                    }
                }
            }
            let (lo, hi) = (self.lo, self.hi);
            match &self.out {
                TileOut::Rows { c, ldc, beta, bias } => {
                    let keep = _mm512_set1_ps(*beta);
                    let (b0, b1) = match *bias {
                        None => (_mm512_setzero_ps(), _mm512_setzero_ps()),
                        Some(b) => (
                            _mm512_maskz_loadu_ps(lo, b),
                            _mm512_maskz_loadu_ps(hi, b.add(16)),
                        ),
                    };
                    for (r, acc) in acc.iter().enumerate() {
                        let cr = c.add(r * ldc);
                        let (mut v0, mut v1) =
                            (_mm512_add_ps(acc[0], b0), _mm512_add_ps(acc[1], b1));
                        if *beta != 0.0 {
                            v0 = _mm512_fmadd_ps(keep, _mm512_maskz_loadu_ps(lo, cr), v0);
                            v1 = _mm512_fmadd_ps(keep, _mm512_maskz_loadu_ps(hi, cr.add(16)), v1);
                        }
                        _mm512_mask_storeu_ps(cr, lo, v0);
                        _mm512_mask_storeu_ps(cr.add(16), hi, v1);
                    }
                }
                TileOut::Scatter { ptrs, gates } => {
                    for (r, acc) in acc.iter().enumerate() {
                        let (cr, gate) = (ptrs[r], _mm512_set1_ps(gates[r]));
                        let old0 = _mm512_maskz_loadu_ps(lo, cr);
                        let old1 = _mm512_maskz_loadu_ps(hi, cr.add(16));
                        let v0 = _mm512_add_ps(_mm512_mul_ps(gate, acc[0]), old0);
                        let v1 = _mm512_add_ps(_mm512_mul_ps(gate, acc[1]), old1);
                        _mm512_mask_storeu_ps(cr, lo, v0);
                        _mm512_mask_storeu_ps(cr.add(16), hi, v1);
                    }
                }
            }
        }
    }
}
