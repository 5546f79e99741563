//! `Rope`: rotary position embedding on the first `n_rot` channels of each head.
//!
//! Attributes: rotate_fraction (n_rot = int(fraction * dh), must be even and > 0), base.
//! `inv_freq[i] = base^(-2i / n_rot)` for i in 0..n_rot/2 (normalised by n_rot, not dh).
//! Half-split (GPT-NeoX): on channels `x1 = x[..n_rot/2]`, `x2 = x[n_rot/2..n_rot]`,
//! `out = x * cos + rotate_half(x) * sin` with `rotate_half(x) = cat(-x2, x1)`; the channels
//! from n_rot on pass unchanged.

use crate::OpError;

/// Rotary embedding parameters for one head width.
#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    n_rot: usize,
    inv_freq: Vec<f64>,
}

impl Rope {
    /// Builds the frequency table; errors unless `int(fraction * d_head)` is even and > 0.
    pub fn new(d_head: usize, rotate_fraction: f64, base: f64) -> Result<Self, OpError> {
        let n_rot = (rotate_fraction * d_head as f64) as usize;
        if n_rot == 0 || !n_rot.is_multiple_of(2) || n_rot > d_head {
            return Err(OpError::Attribute {
                op: "Rope",
                attr: "rotate_fraction",
                reason: format!(
                    "int({rotate_fraction} * d_head {d_head}) = {n_rot} rotated channels; must be even, > 0 and <= d_head"
                ),
            });
        }
        let half = n_rot / 2;
        let inv_freq = (0..half)
            .map(|i| base.powf(-(2.0 * i as f64) / n_rot as f64))
            .collect();
        Ok(Rope { n_rot, inv_freq })
    }

    /// Number of rotated channels.
    pub fn n_rot(&self) -> usize {
        self.n_rot
    }

    /// Rotates one head vector `x` (`[dh]`) in place for position `pos`.
    pub fn apply(&self, x: &mut [f32], pos: usize) {
        let half = self.n_rot / 2;
        for (i, &f) in self.inv_freq.iter().enumerate() {
            let angle = pos as f64 * f;
            let (sin, cos) = angle.sin_cos();
            let (a, b) = (x[i] as f64, x[i + half] as f64);
            x[i] = (a * cos - b * sin) as f32;
            x[i + half] = (b * cos + a * sin) as f32;
        }
    }
}
