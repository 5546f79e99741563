//! `LayerNorm` over the last axis (biased variance, affine with bias) and the small
//! element-wise ops of the graph: `Embedding`, `Add`, `Relu`, `Softmax`, `ConcatSeq`.
//! Each matches its `switchhead_ops` reference (LayerNorm statistics in f64 like it).

use crate::KernelError;
use crate::error::check_len;
use crate::parallel::par_rows;

/// `(x - mean) / sqrt(var + eps) * w + b` per row of x `[rows, d]`.
pub fn layer_norm(
    x: &[f32],
    d: usize,
    w: &[f32],
    b: &[f32],
    eps: f64,
    threads: usize,
) -> Result<Vec<f32>, KernelError> {
    check_len("LayerNorm weight", w, d)?;
    check_len("LayerNorm bias", b, d)?;
    if d == 0 || !x.len().is_multiple_of(d) {
        return Err(shape("LayerNorm x", format!("rows of {d}"), x.len()));
    }
    let mut y = vec![0f32; x.len()];
    par_rows(threads, &mut y, d, 64, |r0, block| {
        for (i, out) in block.chunks_exact_mut(d).enumerate() {
            norm_row(&x[(r0 + i) * d..(r0 + i + 1) * d], w, b, eps, out);
        }
    });
    Ok(y)
}

fn norm_row(row: &[f32], w: &[f32], b: &[f32], eps: f64, out: &mut [f32]) {
    let n = row.len() as f64;
    let mean = sum_f64(row, |v| v) / n;
    let var = sum_f64(row, |v| (v - mean) * (v - mean)) / n;
    let inv = (1.0 / (var + eps).sqrt()) as f32;
    let mean = mean as f32;
    for (((o, &v), &w), &b) in out.iter_mut().zip(row).zip(w).zip(b) {
        *o = (v - mean) * inv * w + b;
    }
}

/// `sum f(v)` over `row` in f64, in eight interleaved partial sums (one vector of them) so
/// the additions pipeline instead of waiting on one another; the order differs from a
/// sequential sum only in f64 rounding, far below the f32 result's.
fn sum_f64(row: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = row.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&v| f(v as f64)).sum();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v as f64);
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Rows of `table` (`[vocab, d]`) for `ids`: `[ids.len(), d]`; an id outside the table is
/// an error naming it.
pub fn embedding(
    table: &[f32],
    vocab: usize,
    d: usize,
    ids: &[i64],
) -> Result<Vec<f32>, KernelError> {
    check_len("Embedding table", table, vocab * d)?;
    let mut y = Vec::with_capacity(ids.len() * d);
    for &id in ids {
        let row = usize::try_from(id)
            .ok()
            .filter(|&r| r < vocab)
            .ok_or_else(|| KernelError::Shape {
                what: "Embedding token id",
                expected: format!("in 0..{vocab}"),
                got: id.to_string(),
            })?;
        y.extend_from_slice(&table[row * d..(row + 1) * d]);
    }
    Ok(y)
}

/// Elements per thread below which an element-wise op stays on one thread.
const MIN_ELEMENTS: usize = 1 << 15;

/// `a += b` element-wise, on up to `threads` threads.
pub fn add_in_place(a: &mut [f32], b: &[f32], threads: usize) -> Result<(), KernelError> {
    check_len("Add b", b, a.len())?;
    par_rows(threads, a, 1, MIN_ELEMENTS, |i0, part| {
        part.iter_mut().zip(&b[i0..]).for_each(|(x, &y)| *x += y);
    });
    Ok(())
}

/// `max(x, 0)` in place.
pub fn relu_in_place(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = v.max(0.0));
}

/// Softmax over each row of `width` (the last axis), in place, f64 sums.
pub fn softmax_rows(x: &mut [f32], width: usize) -> Result<(), KernelError> {
    if width == 0 || !x.len().is_multiple_of(width) {
        return Err(shape("Softmax x", format!("rows of {width}"), x.len()));
    }
    for row in x.chunks_exact_mut(width) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let sum: f64 = row.iter().map(|&v| ((v - max) as f64).exp()).sum();
        row.iter_mut()
            .for_each(|v| *v = (((*v - max) as f64).exp() / sum) as f32);
    }
    Ok(())
}

/// `[B, M, D] ++ [B, T, D] -> [B, M+T, D]` (axis 1).
pub fn concat_seq(
    a: &[f32],
    m: usize,
    b: &[f32],
    t: usize,
    batch: usize,
    d: usize,
) -> Result<Vec<f32>, KernelError> {
    check_len("ConcatSeq a", a, batch * m * d)?;
    check_len("ConcatSeq b", b, batch * t * d)?;
    let mut y = Vec::with_capacity(batch * (m + t) * d);
    for i in 0..batch {
        y.extend_from_slice(&a[i * m * d..(i + 1) * m * d]);
        y.extend_from_slice(&b[i * t * d..(i + 1) * t * d]);
    }
    Ok(y)
}

fn shape(what: &'static str, expected: String, got: usize) -> KernelError {
    KernelError::Shape {
        what,
        expected,
        got: got.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Split across threads (parts not a multiple of anything), the sum is every element's,
    /// and a short operand is an error naming it.
    #[test]
    fn add_in_place_splits_exactly() {
        let n = 3 * MIN_ELEMENTS + 17;
        let b: Vec<f32> = (0..n).map(|i| (i % 13) as f32 * 0.5).collect();
        for threads in [1, 2, 3] {
            let mut a: Vec<f32> = (0..n).map(|i| i as f32).collect();
            add_in_place(&mut a, &b, threads).expect("same lengths");
            assert!(a.iter().enumerate().all(|(i, &v)| v == i as f32 + b[i]));
        }
        let err = add_in_place(&mut [0.0; 4], &[1.0; 3], 2).expect_err("short b");
        assert!(err.to_string().contains("Add b"), "{err}");
    }
}
