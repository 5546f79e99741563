//! `SigmaMoE` -> all N_E experts computed densely, weighted by the scattered top-k gate.
//!
//! `h = Relu(x @ keys')` with keys' = `[D, N_E*G]`, `h[.., e, :] *= gate[e]` (0 unless
//! selected), `y = h @ values'` with values' = `[N_E*G, D]`.

use switchhead_ops::op::SigmaMoeAttrs;

use super::common::{reshape, transpose};
use super::router::dense_gates;
use crate::onnx::builder::Builder;

/// Inputs x `[B, T, D]`, router `[N_E, D]`, keys `[N_E, D, G]`, values `[N_E, G, D]`.
pub fn sigma_moe(b: &mut Builder, a: &SigmaMoeAttrs, i: &[&str]) -> String {
    let (ne, g) = (a.experts as i64, a.expert_size as i64);
    let gate = dense_gates(b, i[0], i[1], 1, ne, a.k as i64);
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
