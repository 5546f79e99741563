//! The sigmoid top-k router, as a dense gate tensor or as (gates, flat expert ids).
//!
//! `g = Sigmoid(x @ sel^T)` reshaped to `[B, L, G, E]`, `TopK(k)` on the expert axis. The dense
//! form scatters the selected gates into zeros: unselected experts get a gate of exactly 0, so
//! multiplying every expert's output by the dense gate and summing is exact. The top-k form
//! returns the k raw sigmoid gates and the flat expert ids `group*E + e` (head-major, the row
//! of the expert's matrix in the stacked weight).

use super::common::{bin, matmul_t, reshape};
use crate::onnx::builder::{Builder, attr_i, attr_tensor, tensor_f32, tensor_i64};

/// Router shape: `groups` (heads, or 1) of `experts` each, `k` selected per group.
#[derive(Debug, Clone, Copy)]
pub struct Routing {
    pub groups: i64,
    pub experts: i64,
    pub k: i64,
}

/// The router logits `x @ sel^T` `[B, L, G*E]` for x `[B, L, D]` and sel `[G*E, D]`.
pub fn logits(b: &mut Builder, x: &str, sel: &str) -> String {
    matmul_t(b, x, sel)
}

/// `(sigmoid gates [B, L, G, E], TopK outputs [values, indices] each [B, L, G, k])`.
fn top_k(b: &mut Builder, logits: &str, r: Routing) -> (String, Vec<String>) {
    let g = b.op("Sigmoid", &[logits], vec![]);
    let g = reshape(b, &g, &[0, 0, r.groups, r.experts]);
    let kk = b.ints(&[r.k]);
    let attrs = vec![
        attr_i("axis", -1),
        attr_i("largest", 1),
        attr_i("sorted", 1),
    ];
    let top = b.op_n("TopK", &[&g, &kk], attrs, 2);
    (g, top)
}

/// Dense gates `[B, L, groups, experts]` from the router [`logits`].
pub fn dense_gates(b: &mut Builder, logits: &str, r: Routing) -> String {
    let (g, top) = top_k(b, logits, r);
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

/// `(gates, flat expert ids)`, both `[B, L, groups, k]`: the selected sigmoid gates and
/// `group*experts + e` for each selected expert e (int64), from the router [`logits`].
pub fn top_gates(b: &mut Builder, logits: &str, r: Routing) -> (String, String) {
    let (_, top) = top_k(b, logits, r);
    let offsets: Vec<i64> = (0..r.groups).map(|g| g * r.experts).collect();
    let offsets = b.constant(tensor_i64(&offsets, &[r.groups, 1]));
    let ids = bin(b, "Add", &top[1], &offsets);
    (top[0].clone(), ids)
}
