//! `LayerNorm` over the last axis, affine with bias.
//!
//! Inputs: x `[.., D]`, weight `[D]`, bias `[D]`; attribute eps. Output: same shape as x.
//! Biased variance (divide by D), as PyTorch.

use crate::{OpError, Tensor};

/// `(x - mean) / sqrt(var + eps) * weight + bias` over the last axis.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor, OpError> {
    let d = x.last_dim();
    weight.expect_shape("layer_norm weight", &[d])?;
    bias.expect_shape("layer_norm bias", &[d])?;
    let mut out = Vec::with_capacity(x.data().len());
    for r in 0..x.rows() {
        let row = x.row(r);
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
        let inv = 1.0 / (var + eps).sqrt();
        for ((&v, &w), &b) in row.iter().zip(weight.data()).zip(bias.data()) {
            out.push(((v as f64 - mean) * inv * w as f64 + b as f64) as f32);
        }
    }
    Tensor::new(x.shape().to_vec(), out)
}
