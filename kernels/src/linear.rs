//! `Linear`, `DenseFfn`: `x @ w^T + b` with PyTorch's `[out, in]` weights, rows split across
//! threads. Matches `switchhead_ops::linear::linear` / `switchhead_ops::ffn::dense_ffn`
//! with f32 accumulation.

use crate::KernelError;
use crate::error::check_len;
use crate::gemm::{Mat, gemm};
use crate::parallel::{par_map, par_rows};

/// Rows per thread below which a product stays on one thread.
const MIN_ROWS: usize = 16;
/// Output columns per thread below which a few-row product stays on one thread.
const MIN_COLS: usize = 64;

/// `y = x @ w^T (+ b)`: x `[rows, in_dim]`, w `[out_dim, in_dim]`, b `[out_dim]`.
pub fn linear(
    x: &[f32],
    rows: usize,
    in_dim: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    out_dim: usize,
    threads: usize,
) -> Result<Vec<f32>, KernelError> {
    check_len("Linear x", x, rows * in_dim)?;
    check_len("Linear weight", w, out_dim * in_dim)?;
    if let Some(b) = bias {
        check_len("Linear bias", b, out_dim)?;
    }
    let mut y = vec![0f32; rows * out_dim];
    linear_into(x, in_dim, w, bias, out_dim, threads, &mut y);
    Ok(y)
}

/// [`linear`] into `y` (`[rows, out_dim]`, overwritten); shapes are the caller's invariant.
pub(crate) fn linear_into(
    x: &[f32],
    in_dim: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    out_dim: usize,
    threads: usize,
    y: &mut [f32],
) {
    let rows = rows_of(y, out_dim);
    if threads > 1 && rows < MIN_ROWS * threads {
        return linear_cols(x, in_dim, w, bias, out_dim, threads, y);
    }
    let wt = Mat::rows(w, out_dim, in_dim).t();
    par_rows(threads, y, out_dim, MIN_ROWS, |r0, block| {
        let n = block.len() / out_dim.max(1);
        let beta = match bias {
            Some(b) => {
                block
                    .chunks_exact_mut(out_dim)
                    .for_each(|row| row.copy_from_slice(b));
                1.0
            }
            None => 0.0,
        };
        let xs = Mat::rows(x, rows_of(x, in_dim), in_dim).row_range(r0, n);
        gemm(xs, wt, block, out_dim, beta);
    });
}

/// [`linear_into`] for few rows (decode steps): the threads split the output columns, so
/// each reads its share of the weight once.
fn linear_cols(
    x: &[f32],
    in_dim: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    out_dim: usize,
    threads: usize,
    y: &mut [f32],
) {
    let rows = rows_of(y, out_dim);
    let per = out_dim.div_ceil(threads.max(1)).max(MIN_COLS);
    let parts = par_map(threads, out_dim.div_ceil(per), |p| {
        let (c0, n) = (p * per, per.min(out_dim - p * per));
        let mut part = vec![0f32; rows * n];
        let b = bias.map(|b| &b[c0..c0 + n]);
        linear_into(
            x,
            in_dim,
            &w[c0 * in_dim..(c0 + n) * in_dim],
            b,
            n,
            1,
            &mut part,
        );
        part
    });
    for (p, part) in parts.iter().enumerate() {
        let c0 = p * per;
        let n = part.len() / rows.max(1);
        for (dst, src) in y.chunks_exact_mut(out_dim).zip(part.chunks_exact(n.max(1))) {
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
    pub w1: &'a [f32],
    pub b1: &'a [f32],
    pub w2: &'a [f32],
    pub b2: &'a [f32],
    pub d_ff: usize,
}

/// `linear2(relu(linear1(x)))` on x `[rows, d]`, each thread running whole row blocks
/// through both products (its hidden block stays in its cache).
pub fn dense_ffn(
    w: &DenseFfnWeights<'_>,
    x: &[f32],
    rows: usize,
    d: usize,
    threads: usize,
) -> Result<Vec<f32>, KernelError> {
    let f = w.d_ff;
    check_len("DenseFfn x", x, rows * d)?;
    check_len("DenseFfn w1", w.w1, f * d)?;
    check_len("DenseFfn b1", w.b1, f)?;
    check_len("DenseFfn w2", w.w2, d * f)?;
    check_len("DenseFfn b2", w.b2, d)?;
    let mut y = vec![0f32; rows * d];
    if threads > 1 && rows < MIN_ROWS * threads {
        // Decode-sized: both products split their output columns across the threads.
        let mut h = vec![0f32; rows * f];
        linear_into(x, d, w.w1, Some(w.b1), f, threads, &mut h);
        h.iter_mut().for_each(|v| *v = v.max(0.0));
        linear_into(&h, f, w.w2, Some(w.b2), d, threads, &mut y);
        return Ok(y);
    }
    par_rows(threads, &mut y, d, MIN_ROWS, |r0, block| {
        let n = block.len() / d.max(1);
        let mut h = vec![0f32; n * f];
        linear_into(&x[r0 * d..(r0 + n) * d], d, w.w1, Some(w.b1), f, 1, &mut h);
        h.iter_mut().for_each(|v| *v = v.max(0.0));
        linear_into(&h, f, w.w2, Some(w.b2), d, 1, block);
    });
    Ok(y)
}
