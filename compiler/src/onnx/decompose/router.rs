//! The sigmoid top-k router as a dense gate tensor.
//!
//! `g = Sigmoid(x @ sel^T)` reshaped to `[B, L, G, E]`, `TopK(k)` on the expert axis, and the
//! selected gates scattered into zeros: unselected experts get a gate of exactly 0, so
//! multiplying every expert's output by the dense gate and summing is exact.

use super::common::{matmul_t, reshape};
use crate::onnx::builder::{Builder, attr_i, attr_tensor, tensor_f32};

/// Dense gates `[B, L, groups, experts]` for x `[B, L, D]` and sel `[groups*experts, D]`.
pub fn dense_gates(
    b: &mut Builder,
    x: &str,
    sel: &str,
    groups: i64,
    experts: i64,
    k: i64,
) -> String {
    let logits = matmul_t(b, x, sel);
    let g = b.op("Sigmoid", &[&logits], vec![]);
    let g = reshape(b, &g, &[0, 0, groups, experts]);
    let kk = b.ints(&[k]);
    let attrs = vec![
        attr_i("axis", -1),
        attr_i("largest", 1),
        attr_i("sorted", 1),
    ];
    let top = b.op_n("TopK", &[&g, &kk], attrs, 2);
    let shape = b.op("Shape", &[&g], vec![]);
    // An explicit f32 zero: ONNX defaults to it, but tract does not infer that default.
    let zero = attr_tensor("value", tensor_f32(&[0.0], &[1]));
    let zeros = b.op("ConstantOfShape", &[&shape], vec![zero]);
    b.op(
        "ScatterElements",
        &[&zeros, &top[1], &top[0]],
        vec![attr_i("axis", -1)],
    )
}
