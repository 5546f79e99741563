//! `SigmaMoE` -> standard ops, in either [`ExpertForm`].
//!
//! Dense: `h = Relu(x @ keys')` with keys' = `[D, N_E*G]`, `h[.., e, :] *= gate[e]` (0 unless
//! selected), `y = h @ values'` with values' = `[N_E*G, D]`.
//! Gather: the K selected `keys[e]` `[B, T, K, D, G]` and `values[e]` `[B, T, K, G, D]`,
//! `h_j = Relu(x @ keys[e_j]) * g_j`, `y = sum_j h_j @ values[e_j]`.

use switchhead_ops::op::SigmaMoeAttrs;

use super::ExpertForm;
use super::common::{bin, reshape, transpose, unsqueeze};
use super::router::{Routing, dense_gates, logits, top_gates};
use crate::onnx::builder::{Builder, attr_i};

/// Inputs x `[B, T, D]`, router `[N_E, D]`, keys `[N_E, D, G]`, values `[N_E, G, D]`.
pub fn sigma_moe(b: &mut Builder, a: &SigmaMoeAttrs, i: &[&str], form: ExpertForm) -> String {
    let r = Routing {
        groups: 1,
        experts: a.experts as i64,
        k: a.k as i64,
    };
    match form {
        ExpertForm::Dense => dense(b, a, i, r),
        ExpertForm::Gather => gather(b, i, r),
    }
}

fn dense(b: &mut Builder, a: &SigmaMoeAttrs, i: &[&str], r: Routing) -> String {
    let (ne, g) = (r.experts, a.expert_size as i64);
    let l = logits(b, i[0], i[1]);
    let gate = dense_gates(b, &l, r);
    let gate = reshape(b, &gate, &[0, 0, ne, 1]);
    let keys = transpose(b, i[2], &[1, 0, 2]);
    let keys = reshape(b, &keys, &[0, ne * g]);
    let h = b.op("MatMul", &[i[0], &keys], vec![]);
    let h = b.op("Relu", &[&h], vec![]);
    let h = reshape(b, &h, &[0, 0, ne, g]);
    let h = b.op("Mul", &[&h, &gate], vec![]);
    let h = reshape(b, &h, &[0, 0, ne * g]);
    let values = reshape(b, i[3], &[ne * g, -1]);
    b.op("MatMul", &[&h, &values], vec![])
}

fn gather(b: &mut Builder, i: &[&str], r: Routing) -> String {
    let l = logits(b, i[0], i[1]);
    let (gate, ids) = top_gates(b, &l, r);
    let ids = reshape(b, &ids, &[0, 0, r.k]);
    let gate = reshape(b, &gate, &[0, 0, r.k, 1, 1]);
    let keys = b.op("Gather", &[i[2], &ids], vec![attr_i("axis", 0)]);
    let x = unsqueeze(b, i[0], &[2, 3]);
    let h = bin(b, "MatMul", &x, &keys);
    let h = b.op("Relu", &[&h], vec![]);
    let h = bin(b, "Mul", &h, &gate);
    let values = b.op("Gather", &[i[3], &ids], vec![attr_i("axis", 0)]);
    let y = bin(b, "MatMul", &h, &values);
    let axes = b.ints(&[2, 3]);
    b.op("ReduceSum", &[&y, &axes], vec![attr_i("keepdims", 0)])
}
