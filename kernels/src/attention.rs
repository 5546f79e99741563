//! Causal softmax attention of one head, blocked over queries.
//!
//! Query r (absolute position `offset + r`, `offset = Tk - T`) sees key c iff
//! `c <= r + offset`: memory always visible, the current chunk causal. With XL position keys
//! (row j = relative position `lo + j`) the logit gains `q_r . Kp(c - r - offset)`.
//! Numerics as `switchhead_ops::attention`, with f32 accumulation.

use crate::gemm::{Mat, gemm};
use crate::vexp::exp_shifted_sum;

/// Query rows per block: the logits of a block stay in cache.
const BLOCK: usize = 64;

/// Inputs of one head: strided `[T, dh]`, `[Tk, dh]`, `[Tk, dh]` views.
#[derive(Clone, Copy)]
pub(crate) struct Head<'a> {
    pub q: Mat<'a>,
    pub k: Mat<'a>,
    pub v: Mat<'a>,
    /// XL position keys `[P, dh]` and the relative position of row 0.
    pub rel: Option<(Mat<'a>, i64)>,
}

/// Attention output `[T, dh]` of one head.
pub(crate) fn causal_head(head: Head<'_>) -> Vec<f32> {
    let (t, tk, dh) = (head.q.rows, head.k.rows, head.q.cols);
    let offset = tk - t;
    let mut out = vec![0f32; t * dh];
    let mut logits = vec![0f32; BLOCK * tk];
    let mut rel = vec![0f32; head.rel.map_or(0, |(kp, _)| BLOCK * kp.rows)];
    for r0 in (0..t).step_by(BLOCK) {
        let rows = BLOCK.min(t - r0);
        let keys = (r0 + rows + offset).min(tk);
        let q = head.q.row_range(r0, rows);
        gemm(q, head.k.row_range(0, keys).t(), &mut logits, keys, 0.0);
        if let Some((kp, lo)) = head.rel {
            // the block's visible keys need relative positions (c - r - offset) from
            // -(offset + r0 + rows - 1) to 0: `keys` rows of the table
            let first = (t - r0 - rows) as i64 + (-(tk as i64 - 1) - lo);
            let (first, width) = (first.max(0) as usize, keys.min(kp.rows));
            let table = kp.row_range(first, width.min(kp.rows - first));
            gemm(q, table.t(), &mut rel, table.rows, 0.0);
            let lo = lo + first as i64;
            add_relative(&mut logits, &rel, table.rows, keys, r0, rows, offset, lo);
        }
        for i in 0..rows {
            softmax_prefix(&mut logits[i * keys..(i + 1) * keys], r0 + i + offset + 1);
        }
        let probs = Mat::rows(&logits, rows, keys);
        gemm(
            probs,
            head.v.row_range(0, keys),
            &mut out[r0 * dh..],
            dh,
            0.0,
        );
    }
    out
}

/// `logits[i, c] += rel[i, (c - r - offset) - lo]` for the visible keys of each block row.
#[allow(clippy::too_many_arguments)]
fn add_relative(
    logits: &mut [f32],
    rel: &[f32],
    width: usize,
    keys: usize,
    r0: usize,
    rows: usize,
    offset: usize,
    lo: i64,
) {
    for i in 0..rows {
        let visible = (r0 + i + offset + 1).min(keys);
        let row = &mut logits[i * keys..i * keys + visible];
        // key c reads relative position c - r - offset, at index c + first in the table row
        let first = (-((r0 + i + offset) as i64) - lo) as usize;
        let rel_row = &rel[i * width + first..i * width + first + visible];
        row.iter_mut().zip(rel_row).for_each(|(l, r)| *l += r);
    }
}

/// Softmax over the first `visible` entries of `row`; the rest become 0.
fn softmax_prefix(row: &mut [f32], visible: usize) {
    let visible = visible.min(row.len());
    let (live, masked) = row.split_at_mut(visible);
    masked.iter_mut().for_each(|v| *v = 0.0);
    let max = live.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum = exp_shifted_sum(live, max);
    let inv = 1.0 / sum;
    live.iter_mut().for_each(|v| *v *= inv);
}
