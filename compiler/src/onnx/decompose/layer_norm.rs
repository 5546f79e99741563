//! `LayerNorm { eps }` -> `LayerNormalization(axis -1, epsilon)`.

use crate::onnx::builder::{Builder, attr_f, attr_i};

/// Inputs x, weight, bias.
pub fn layer_norm(b: &mut Builder, i: &[&str], eps: f64) -> String {
    let attrs = vec![attr_i("axis", -1), attr_f("epsilon", eps as f32)];
    b.op("LayerNormalization", &[i[0], i[1], i[2]], attrs)
}
