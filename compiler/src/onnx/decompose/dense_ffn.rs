//! `DenseFfn` -> `MatMul/Add/Relu/MatMul/Add`.

use super::linear::linear;
use crate::onnx::builder::Builder;

/// Inputs x, w1 `[d_ff, D]`, b1, w2 `[D, d_ff]`, b2.
pub fn dense_ffn(b: &mut Builder, i: &[&str]) -> String {
    let h = linear(b, &[i[0], i[1], i[2]], true);
    let h = b.op("Relu", &[&h], vec![]);
    linear(b, &[&h, i[3], i[4]], true)
}
