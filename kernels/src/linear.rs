//! `Linear`, `DenseFfn`: `x @ w^T + b` with PyTorch's `[out, in]` weights, stored row-major
//! or in the `panels` layout a plan chooses (`switchhead_ops::plan::PlanLayout`). Rows are
//! split across threads; few rows (decode) split the output columns instead. Matches
//! `switchhead_ops::linear::linear` / `switchhead_ops::ffn::dense_ffn` with f32 accumulation.

use switchhead_ops::plan::PANEL;

use crate::KernelError;
use crate::error::check_len;
use crate::gemm::Mat;
use crate::parallel::{par_map, par_rows};
use crate::weight::{Weight, WeightRef};

/// Rows per thread below which a product stays on one thread.
const MIN_ROWS: usize = 16;
/// Output columns per thread below which a few-row product stays on one thread.
const MIN_COLS: usize = 64;
/// Rows of a dense FFN's hidden block per step: the register tile's row block (192), so the
/// weights are streamed once per block as in one long product, and the block's hidden rows
/// (1.6 MB at d_ff 2080) are read back from L2.
const FFN_ROWS: usize = 192;

/// `y = x @ w^T (+ b)`: x `[rows, in_dim]`, w `[out_dim, in_dim]` row-major, b `[out_dim]`.
pub fn linear(
    x: &[f32],
    rows: usize,
    in_dim: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    out_dim: usize,
    threads: usize,
) -> Result<Vec<f32>, KernelError> {
    let w = WeightRef::row_major(w);
    linear_with(x, rows, in_dim, w, bias, out_dim, threads)
}

/// [`linear`] with the weight in any stored form.
pub fn linear_with(
    x: &[f32],
    rows: usize,
    in_dim: usize,
    w: WeightRef<'_>,
    bias: Option<&[f32]>,
    out_dim: usize,
    threads: usize,
) -> Result<Vec<f32>, KernelError> {
    check_len("Linear x", x, rows * in_dim)?;
    w.check("Linear weight", 1, out_dim, in_dim)?;
    if let Some(b) = bias {
        check_len("Linear bias", b, out_dim)?;
    }
    let w = Weight::projection(w, out_dim, in_dim);
    let mut y = vec![0f32; rows * out_dim];
    linear_into(x, w, bias, threads, &mut y);
    Ok(y)
}

/// `x @ w^T` for an `[out, in_dim]` weight on up to `threads` threads, without the entry
/// checks (shapes are the caller's invariant): the projections inside the attention.
pub(crate) fn project_rows(
    x: &[f32],
    in_dim: usize,
    w: WeightRef<'_>,
    out: usize,
    threads: usize,
) -> Vec<f32> {
    let mut y = vec![0f32; rows_of(x, in_dim) * out];
    let w = Weight::projection(w, out, in_dim);
    linear_into(x, w, None, threads, &mut y);
    y
}

/// [`linear`] into `y` (`[rows, out]`, overwritten); shapes are the caller's invariant.
fn linear_into(x: &[f32], w: Weight<'_>, bias: Option<&[f32]>, threads: usize, y: &mut [f32]) {
    let rows = rows_of(y, w.out);
    if threads > 1 && rows < MIN_ROWS * threads {
        return linear_cols(x, w, bias, threads, y);
    }
    par_rows(threads, y, w.out, MIN_ROWS, |r0, block| {
        let n = rows_of(block, w.out);
        let xs = Mat::rows(x, rows_of(x, w.inp), w.inp).row_range(r0, n);
        w.product(xs, block, w.out, bias);
    });
}

/// [`linear_into`] for few rows (decode steps): the threads split the output columns, in
/// whole panels, so each reads its share of the weight once.
fn linear_cols(x: &[f32], w: Weight<'_>, bias: Option<&[f32]>, threads: usize, y: &mut [f32]) {
    let (rows, out) = (rows_of(y, w.out), w.out);
    let per = out
        .div_ceil(threads.max(1))
        .max(MIN_COLS)
        .next_multiple_of(PANEL);
    let parts = par_map(threads, out.div_ceil(per), |p| {
        let (c0, n) = (p * per, per.min(out - p * per));
        let mut part = vec![0f32; rows * n];
        let xs = Mat::rows(x, rows, w.inp);
        w.cols(c0, n)
            .product(xs, &mut part, n, bias.map(|b| &b[c0..c0 + n]));
        part
    });
    for (p, part) in parts.iter().enumerate() {
        let c0 = p * per;
        let n = part.len() / rows.max(1);
        for (dst, src) in y.chunks_exact_mut(out).zip(part.chunks_exact(n.max(1))) {
            dst[c0..c0 + n].copy_from_slice(src);
        }
    }
}

fn rows_of(x: &[f32], width: usize) -> usize {
    x.len() / width.max(1)
}

/// Weights of a dense FFN: w1 `[d_ff, D]`, b1 `[d_ff]`, w2 `[D, d_ff]`, b2 `[D]`.
#[derive(Debug, Clone, Copy)]
pub struct DenseFfnWeights<'a> {
    pub w1: WeightRef<'a>,
    pub b1: &'a [f32],
    pub w2: WeightRef<'a>,
    pub b2: &'a [f32],
    pub d_ff: usize,
}

/// `linear2(relu(linear1(x)))` on x `[rows, d]`, each thread running its rows through both
/// products [`FFN_ROWS`] at a time, so the hidden block it writes and reads back stays in
/// its cache (a thread's whole share at batch 8 is megabytes of hidden activations).
pub fn dense_ffn(
    w: &DenseFfnWeights<'_>,
    x: &[f32],
    rows: usize,
    d: usize,
    threads: usize,
) -> Result<Vec<f32>, KernelError> {
    let f = w.d_ff;
    check_len("DenseFfn x", x, rows * d)?;
    w.w1.check("DenseFfn w1", 1, f, d)?;
    check_len("DenseFfn b1", w.b1, f)?;
    w.w2.check("DenseFfn w2", 1, d, f)?;
    check_len("DenseFfn b2", w.b2, d)?;
    let (w1, w2) = (
        Weight::projection(w.w1, f, d),
        Weight::projection(w.w2, d, f),
    );
    let mut y = vec![0f32; rows * d];
    if threads > 1 && rows < MIN_ROWS * threads {
        // Decode-sized: both products split their output columns across the threads.
        let mut h = vec![0f32; rows * f];
        linear_into(x, w1, Some(w.b1), threads, &mut h);
        h.iter_mut().for_each(|v| *v = v.max(0.0));
        linear_into(&h, w2, Some(w.b2), threads, &mut y);
        return Ok(y);
    }
    par_rows(threads, &mut y, d, MIN_ROWS, |r0, block| {
        let n = block.len() / d.max(1);
        let mut h = vec![0f32; FFN_ROWS.min(n) * f];
        for (i, out) in block.chunks_mut(FFN_ROWS * d.max(1)).enumerate() {
            let (s0, m) = (r0 + i * FFN_ROWS, out.len() / d.max(1));
            let h = &mut h[..m * f];
            linear_into(&x[s0 * d..(s0 + m) * d], w1, Some(w.b1), 1, h);
            h.iter_mut().for_each(|v| *v = v.max(0.0));
            linear_into(h, w2, Some(w.b2), 1, out);
        }
    });
    Ok(y)
}
