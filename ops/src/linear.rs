//! `Linear` (PyTorch convention, weight `[out, in]`) and `MatMul` (weight `[in, out]`).
//!
//! Inputs: x `[.., in]`; output `[.., out]`. Accumulation in f64.

use crate::{OpError, Tensor, dot};

/// `x @ weight^T (+ bias)`, weight `[out, in]`, bias `[out]`.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor, OpError> {
    let (n_out, n_in) = matrix_dims("linear weight", weight)?;
    check_in("linear input", x, n_in)?;
    if let Some(b) = bias {
        b.expect_shape("linear bias", &[n_out])?;
    }
    let mut out = Vec::with_capacity(x.rows() * n_out);
    for r in 0..x.rows() {
        for o in 0..n_out {
            let b = bias.map_or(0.0, |b| b.data()[o] as f64);
            out.push((dot(x.row(r), weight.row(o)) + b) as f32);
        }
    }
    Tensor::new(with_last(x.shape(), n_out), out)
}

/// `x @ weight`, weight `[in, out]` given as a row-major slice.
pub fn matmul_rows(x: &[f32], weight: &[f32], n_in: usize, n_out: usize) -> Vec<f64> {
    let mut acc = vec![0f64; n_out];
    for (i, &xv) in x.iter().enumerate().take(n_in) {
        let w = &weight[i * n_out..(i + 1) * n_out];
        for (a, &wv) in acc.iter_mut().zip(w) {
            *a += xv as f64 * wv as f64;
        }
    }
    acc
}

/// Splits a rank-2 weight into `(rows, cols)`.
pub fn matrix_dims(what: &str, w: &Tensor) -> Result<(usize, usize), OpError> {
    match *w.shape() {
        [r, c] => Ok((r, c)),
        _ => Err(OpError::Shape {
            what: what.into(),
            expected: "rank 2".into(),
            got: format!("{:?}", w.shape()),
        }),
    }
}

fn check_in(what: &str, x: &Tensor, n_in: usize) -> Result<(), OpError> {
    if x.last_dim() == n_in && !x.shape().is_empty() {
        return Ok(());
    }
    Err(OpError::Shape {
        what: what.into(),
        expected: format!("[.., {n_in}]"),
        got: format!("{:?}", x.shape()),
    })
}

/// `shape` with its last axis replaced by `last`.
pub fn with_last(shape: &[usize], last: usize) -> Vec<usize> {
    let mut s = shape.to_vec();
    if let Some(l) = s.last_mut() {
        *l = last;
    }
    s
}
