//! Grouped expert products with the gate and the reduction in the epilogue.
//!
//! A routed projection (SwitchHead's V and O experts, σ-MoE's keys and values) multiplies
//! each routed (row, slot) pair's input row by its expert's `[in, out]` matrix, scales it by
//! the slot's gate and adds it into the slot's output row: over the k experts of a head for
//! V, over heads and k for O, over k for σ-MoE. [`grouped_gemm`] takes the slots grouped by
//! expert (offsets into per-slot source rows, destination rows and gates) and does exactly
//! that, expert by expert, reading the input rows where they lie and adding
//! `gate * product` straight into the destinations: no `[slots, out]` intermediate. A decode
//! step's single row comes as one group per slot, each naming its expert (no sorting).
//!
//! Work is split so that no two threads add into the same element, with no locks: a slot
//! writes `out[dst .. dst + out]`, and any two slots' spans are either the same or disjoint
//! (the callers' invariant: a span is one output row, or one head's columns of a row).
//! Normally each thread takes a share of the output panels of every expert: each weight panel
//! is read once and serves all of its expert's rows. When the panels do not share evenly
//! (V with d_head 76: three panels on two threads) and there are many slots, each thread
//! instead takes the slots whose `dst` falls in its share of the output (contiguous within
//! each expert, since each expert's `dst` ascend) and reads each input row once for all the
//! panels.

use std::ops::Range;

use switchhead_ops::plan::PANEL;

use super::{Mat, Start, gemm};
use crate::parallel::par_map;
use crate::quant::{PackedWeight, packed_gemm};
use crate::weight::{WeightLayout, WeightRef};

/// Per-slot addressing of a grouped product, slots in expert order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slots<'a> {
    /// Where each slot's input row (`in` floats) starts in `x`.
    pub src: &'a [usize],
    /// Where each slot's output row (`out` floats) starts in the output.
    pub dst: &'a [usize],
    /// Each slot's gate (None: 1).
    pub gate: Option<&'a [f32]>,
}

impl<'a> Slots<'a> {
    fn range(&self, r: Range<usize>) -> Slots<'a> {
        Slots {
            src: &self.src[r.clone()],
            dst: &self.dst[r.clone()],
            gate: self.gate.map(|g| &g[r]),
        }
    }
}

/// A stack of expert matrices, each `[inp, out]` applied as `x @ W_e`: f32 row-major
/// `[experts, inp, out]`, f32 `expert_panels` (`WeightLayout::Panels`: each expert the
/// panels layout of its `[out, inp]` transpose), or packed (each expert its `[out, inp]`
/// transpose).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Experts<'a> {
    pub w: WeightRef<'a>,
    pub inp: usize,
    pub out: usize,
}

impl<'a> Experts<'a> {
    /// How many experts the stack holds.
    fn count(&self) -> usize {
        match self.w {
            WeightRef::F32(data, layout) => {
                data.len() / layout.stored_len(self.out, self.inp).max(1)
            }
            WeightRef::Packed(p) if (p.out(), p.inp()) == (self.out, self.inp) => p.count(),
            WeightRef::Packed(_) => 0,
        }
    }

    /// Expert e's f32 elements and their layout (an empty slice for a packed stack).
    fn f32_expert(&self, e: usize) -> (&'a [f32], WeightLayout) {
        let WeightRef::F32(data, layout) = self.w else {
            return (&[], WeightLayout::RowMajor);
        };
        let per = layout.stored_len(self.out, self.inp);
        (&data[e * per..(e + 1) * per], layout)
    }
}

/// The slots of a grouped product: `offsets` (`groups + 1`) delimit each group's slots,
/// whose `dst` ascend; all of a group's slots use one expert: group g's is `experts[g]`, or
/// g itself when `experts` is `None`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dispatch<'a> {
    pub offsets: &'a [usize],
    pub experts: Option<&'a [u32]>,
    pub slots: Slots<'a>,
}

impl Dispatch<'_> {
    fn groups(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    fn expert(&self, g: usize) -> usize {
        self.experts.map_or(g, |e| e[g] as usize)
    }

    /// Group g's slots whose destination starts in `span` (contiguous: `dst` ascend).
    fn slots_in(&self, g: usize, span: &Range<usize>) -> Slots<'_> {
        let (lo, hi) = (self.offsets[g], self.offsets[g + 1]);
        let dst = &self.slots.dst[lo..hi];
        let a = lo + dst.partition_point(|&x| x < span.start);
        let z = lo + dst.partition_point(|&x| x < span.end);
        self.slots.range(a..z)
    }
}

/// Slots per thread from which the work may be split by output rows rather than by panels.
const ROW_SPLIT: usize = 48;

/// Slots per group and thread from which a row split pays even when the panels share evenly.
const ROWS_PER_GROUP: usize = 96;

/// Slots per group, on average, in each output block of a row split: a thread goes through
/// its share of the output a block at a time, every expert adding into the block while it is
/// in L2 (the O experts at `c4-47m` batch 8: 5% faster than one pass per expert over the
/// whole share), with enough slots per expert to pay for reading its weight again.
const SLOTS_PER_BLOCK: usize = 192;

/// Whether to split by output rows: only with many slots, and then when the panels do not
/// share evenly or each thread gets many rows of every expert. A column split keeps every
/// expert's rows together, so each weight panel is read once for all of them, but every
/// thread reads all the rows; with hundreds of rows per expert (the O experts at batch 8)
/// reading each row once and an even split win.
fn split_rows(slots: usize, groups: usize, panels: usize, threads: usize) -> bool {
    let uneven = !panels.is_multiple_of(threads) && panels < 4 * threads;
    let deep = slots >= ROWS_PER_GROUP * threads * groups.max(1);
    threads > 1 && slots >= ROW_SPLIT * threads && (uneven || deep)
}

/// A raw output pointer shared by the items of one product, which write disjoint elements.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: items write disjoint elements (the module's split), and the pointer outlives them
// (`grouped_gemm` returns only after every item finished).
unsafe impl Send for Out {}
// SAFETY: as above.
unsafe impl Sync for Out {}

/// For every slot i of expert e: `out[dst[i] .. + w.out] += gate[i] * (x[src[i] .. + w.inp] @ W_e)`.
///
/// Shapes are the callers' invariants (all kernel-internal); a slot out of bounds is a bug
/// and panics before anything is written.
pub(crate) fn grouped_gemm(
    x: &[f32],
    d: &Dispatch<'_>,
    w: Experts<'_>,
    out: &mut [f32],
    threads: usize,
) {
    let groups = d.groups();
    let n_slots = d.offsets.last().copied().unwrap_or(0);
    check(x, d, w, out, n_slots);
    let out_len = out.len();
    if n_slots == 0 || w.out == 0 {
        return;
    }
    let base = Out(out.as_mut_ptr());
    let panels = w.out.div_ceil(PANEL);
    let threads = threads.max(1);
    let share = |i: usize, n: usize, of: usize| (of * i / n)..(of * (i + 1) / n);
    if split_rows(n_slots, groups, panels, threads) {
        // each item: the slots whose destination lies in its share of the output, a block of
        // it at a time
        let items = threads;
        let blocks = (n_slots / items / (groups * SLOTS_PER_BLOCK).max(1)).max(1);
        par_map(threads, items, |item| {
            let whole = share(item, items, out_len);
            let step = whole.len().div_ceil(blocks).max(1);
            for start in whole.clone().step_by(step) {
                let span = start..(start + step).min(whole.end);
                for g in 0..groups {
                    let slots = d.slots_in(g, &span);
                    // SAFETY: `check` bounded every slot's rows; this item alone writes the
                    // spans starting in its share (spans are equal or disjoint).
                    unsafe { expert_product(x, slots, w, d.expert(g), 0..panels, base) };
                }
            }
        });
    } else {
        // each item: a share of the output panels of every expert
        let items = threads.min(panels);
        par_map(threads, items, |item| {
            for g in 0..groups {
                let slots = d.slots.range(d.offsets[g]..d.offsets[g + 1]);
                let cols = share(item, items, panels);
                // SAFETY: `check` bounded every slot's rows; this item alone writes these
                // columns.
                unsafe { expert_product(x, slots, w, d.expert(g), cols, base) };
            }
        });
    }
}

fn check(x: &[f32], d: &Dispatch<'_>, w: Experts<'_>, out: &[f32], n: usize) {
    let groups = d.groups();
    let experts = (0..groups).map(|g| d.expert(g) + 1).max().unwrap_or(0);
    assert!(
        d.slots.src.len() == n
            && d.slots.dst.len() == n
            && d.slots.gate.is_none_or(|g| g.len() == n),
        "grouped_gemm slots"
    );
    assert!(w.count() >= experts, "grouped_gemm weights");
    assert!(
        d.slots.src.iter().all(|&s| s + w.inp <= x.len()),
        "grouped_gemm input rows"
    );
    assert!(
        d.slots.dst.iter().all(|&s| s + w.out <= out.len()),
        "grouped_gemm output rows"
    );
    assert!(
        (0..groups).all(|g| d.slots.dst[d.offsets[g]..d.offsets[g + 1]].is_sorted()),
        "grouped_gemm: each group's destinations ascend"
    );
}

/// Expert e's slots times output panels `cols` of its matrix, added into `out`.
///
/// # Safety
/// Every slot's input and output rows are in bounds; no other thread touches these columns
/// of these destinations during the call.
unsafe fn expert_product(
    x: &[f32],
    slots: Slots<'_>,
    w: Experts<'_>,
    e: usize,
    cols: Range<usize>,
    out: Out,
) {
    if slots.src.is_empty() || cols.is_empty() {
        return;
    }
    let (expert, layout) = match w.w {
        // SAFETY: this function's contract.
        WeightRef::Packed(p) => return unsafe { packed_product(x, slots, (p, w), e, cols, out) },
        WeightRef::F32(..) => w.f32_expert(e),
    };
    #[cfg(target_arch = "x86_64")]
    if layout == WeightLayout::Panels && super::avx512::available() {
        let m = (expert, w.inp, w.out);
        // SAFETY: AVX-512F is present; the rest is this function's contract.
        return unsafe { super::tile512::grouped_panels(x, slots, m, cols, out.0) };
    }
    let block = gather(x, slots.src, w.inp);
    let a = Mat::rows(&block, slots.src.len(), w.inp);
    for p in cols {
        let (c0, width) = (p * PANEL, PANEL.min(w.out - p * PANEL));
        let b = match layout {
            WeightLayout::Panels => Mat {
                data: &expert[p * w.inp * PANEL..],
                rows: w.inp,
                cols: width,
                rs: PANEL,
                cs: 1,
            },
            WeightLayout::RowMajor => Mat::rows(expert, w.inp, w.out).col_range(c0, width),
        };
        let mut prod = vec![0f32; slots.src.len() * width];
        gemm(a, b, &mut prod, width, 0.0);
        // SAFETY: this function's contract.
        unsafe { add_gated(&prod, slots, c0, width, out) };
    }
}

/// [`expert_product`] for a packed stack: one product over the panels' columns.
///
/// # Safety
/// As [`expert_product`].
unsafe fn packed_product(
    x: &[f32],
    slots: Slots<'_>,
    (p, w): (&PackedWeight, Experts<'_>),
    e: usize,
    cols: Range<usize>,
    out: Out,
) {
    let (c0, c1) = (cols.start * PANEL, (cols.end * PANEL).min(w.out));
    let block = gather(x, slots.src, w.inp);
    let a = Mat::rows(&block, slots.src.len(), w.inp);
    let width = c1 - c0;
    let mut prod = vec![0f32; slots.src.len() * width];
    packed_gemm(a, p, e, c0..c1, &mut prod, width, Start::Beta(0.0));
    // SAFETY: this function's contract.
    unsafe { add_gated(&prod, slots, c0, width, out) };
}

/// Adds each slot's gated product row (`width` columns from `c0`) into its destination.
///
/// # Safety
/// As [`expert_product`].
unsafe fn add_gated(prod: &[f32], slots: Slots<'_>, c0: usize, width: usize, out: Out) {
    for (i, row) in prod.chunks_exact(width.max(1)).enumerate() {
        let gate = slots.gate.map_or(1.0, |g| g[i]);
        // SAFETY: in bounds (checked) and written by this item alone.
        let dst = unsafe { std::slice::from_raw_parts_mut(out.0.add(slots.dst[i] + c0), width) };
        dst.iter_mut().zip(row).for_each(|(o, &v)| *o += gate * v);
    }
}

/// The `[src.len(), dim]` block of the rows starting at `src`.
fn gather(x: &[f32], src: &[usize], dim: usize) -> Vec<f32> {
    let mut block = Vec::with_capacity(src.len() * dim);
    for &s in src {
        block.extend_from_slice(&x[s..s + dim]);
    }
    block
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use switchhead_ops::plan::to_expert_panels;

    fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
        for (i, (g, v)) in got.iter().zip(want).enumerate() {
            assert!((g - v).abs() <= tol, "{what} at {i}: {g} vs {v}");
        }
    }

    /// Groups in `order` (expert ids) over slots grouped by `offsets`: the new offsets, each
    /// group's expert and the slot permutation.
    fn regroup(offsets: &[usize], order: &[usize]) -> (Vec<usize>, Vec<u32>, Vec<usize>) {
        let (mut offs, mut ids, mut perm) = (vec![0], vec![], vec![]);
        for &e in order {
            perm.extend(offsets[e]..offsets[e + 1]);
            offs.push(perm.len());
            ids.push(e as u32);
        }
        (offs, ids, perm)
    }

    /// The grouped product equals a plain per-slot loop, in both layouts (the AVX-512 tile on
    /// a CPU that has it), across K blocks (> 512), runs of panels (> 8 at K 512), row blocks
    /// (> 192 slots of one expert),
    /// row and panel tails, empty experts, both work splits (the row split in one output block
    /// and in several) and thread counts; also with the groups naming their experts out of
    /// order (the single-row dispatch).
    #[test]
    fn grouped_matches_per_slot_loop() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for (experts, inp, out, slots) in [
            (3usize, 5usize, 7usize, 9usize),
            (4, 40, 76, 300),
            (5, 600, 33, 450),
            (2, 76, 412, 30),
            // K blocks of 512 and 88 across runs of 8 and 46 panels (22 panels)
            (2, 600, 700, 40),
            (3, 50, 100, 700),
            // a row split over more than one output block per thread
            (3, 40, 76, 3600),
        ] {
            let rows = 50;
            let x: Vec<f32> = (0..rows * inp)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let w: Vec<f32> = (0..experts * inp * out)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            // slots in expert order, destinations ascending; expert 1 gets none; 10 output
            // rows, so experts add into the same rows
            let mut offsets = vec![0];
            let (mut src, mut dst, mut gate) = (vec![], vec![], vec![]);
            for e in 0..experts {
                let n = if e == 1 { 0 } else { slots / experts };
                let mut rows_of: Vec<usize> = (0..n).map(|_| rng.random_range(0..10)).collect();
                rows_of.sort();
                for row in rows_of {
                    src.push(rng.random_range(0..rows) * inp);
                    dst.push(row * out);
                    gate.push(rng.random_range(0.0..1.0));
                }
                offsets.push(src.len());
            }
            let out_len = 10 * out;
            let mut want = vec![0.5f32; out_len];
            for e in 0..experts {
                for i in offsets[e]..offsets[e + 1] {
                    for o in 0..out {
                        let dot: f32 = (0..inp)
                            .map(|j| x[src[i] + j] * w[(e * inp + j) * out + o])
                            .sum();
                        want[dst[i] + o] += gate[i] * dot;
                    }
                }
            }
            let packed = to_expert_panels(&w, experts, inp, out);
            for (data, layout) in [
                (&w, WeightLayout::RowMajor),
                (&packed, WeightLayout::Panels),
            ] {
                for threads in [1, 2, 3] {
                    let d = Dispatch {
                        offsets: &offsets,
                        experts: None,
                        slots: Slots {
                            src: &src,
                            dst: &dst,
                            gate: Some(&gate),
                        },
                    };
                    let w = Experts {
                        w: WeightRef::F32(data, layout),
                        inp,
                        out,
                    };
                    let mut got = vec![0.5f32; out_len];
                    grouped_gemm(&x, &d, w, &mut got, threads);
                    let tol = 1e-5 * (inp * slots) as f32;
                    assert_close(&got, &want, tol, &format!("{layout:?} t{threads}"));
                    // the same slots as groups naming their experts, last expert first
                    let order: Vec<usize> = (0..experts).rev().collect();
                    let (offs, ids, perm) = regroup(&offsets, &order);
                    let pick = |v: &[usize]| perm.iter().map(|&i| v[i]).collect::<Vec<_>>();
                    let (src2, dst2) = (pick(&src), pick(&dst));
                    let gate2: Vec<f32> = perm.iter().map(|&i| gate[i]).collect();
                    let d = Dispatch {
                        offsets: &offs,
                        experts: Some(&ids),
                        slots: Slots {
                            src: &src2,
                            dst: &dst2,
                            gate: Some(&gate2),
                        },
                    };
                    let mut got = vec![0.5f32; out_len];
                    grouped_gemm(&x, &d, w, &mut got, threads);
                    assert_close(&got, &want, tol, &format!("{layout:?} t{threads} named"));
                }
            }
        }
    }
}
