//! Transformer-XL relative positions.
//!
//! `pe(p)[2i] = sin(p * 10000^(-2i/D))`, `pe(p)[2i+1] = cos(...)` (interleaved, D even), and
//! the position keys `Kp(p) = (s * pe(p)) @ Wpk^T` (`Wpk: [H*dh, D]`, no bias). The logit of
//! query r and key c gains `q_r . Kp(c - r - offset)` (offset = memory length), so visible keys
//! have p <= 0.

use crate::linear::matrix_dims;
use crate::{OpError, Tensor, dot};

/// The sinusoid of relative position `p` over `d` channels (d even).
pub fn sinusoid(p: i64, d: usize) -> Vec<f32> {
    let mut pe = vec![0f32; d];
    for i in 0..d / 2 {
        let freq = 10000f64.powf(-(2.0 * i as f64) / d as f64);
        let (sin, cos) = (p as f64 * freq).sin_cos();
        pe[2 * i] = sin as f32;
        pe[2 * i + 1] = cos as f32;
    }
    pe
}

/// Position keys for relative positions `lo..=hi`: returns `[(hi-lo+1), H*dh]`, row j = Kp(lo+j).
pub fn position_keys(w_pk: &Tensor, scale: f64, lo: i64, hi: i64) -> Result<Tensor, OpError> {
    let (n_out, d) = matrix_dims("pos_to_pk", w_pk)?;
    if d % 2 != 0 {
        return Err(OpError::Attribute {
            op: "XlPositions",
            attr: "d_model",
            reason: format!("the interleaved sinusoid needs an even d_model, got {d}"),
        });
    }
    let count = usize::try_from(hi - lo + 1).unwrap_or(0);
    let mut out = Vec::with_capacity(count * n_out);
    for p in lo..=hi {
        let pe: Vec<f32> = sinusoid(p, d)
            .iter()
            .map(|&v| (v as f64 * scale) as f32)
            .collect();
        out.extend((0..n_out).map(|o| dot(&pe, w_pk.row(o)) as f32));
    }
    Tensor::new(vec![count, n_out], out)
}
