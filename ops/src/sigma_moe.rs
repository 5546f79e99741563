//! `SigmaMoE`: the σ-MoE feed-forward block of SwitchAll.
//!
//! Inputs: x `[n, D]`, router `[N_E, D]`, keys `[N_E, D, G]`, values `[N_E, G, D]`; attribute k.
//! `g = sigmoid(x @ router^T)`, top-k over all N_E experts (not renormalised),
//! `y = sum_j g_j * (relu(x @ keys[e_j]) @ values[e_j])`. No biases. Output `[n, D]`.

use crate::linear::matmul_rows;
use crate::router::{Routing, sigmoid_topk};
use crate::{OpError, Tensor};

/// Runs the σ-MoE block, returning its output and the routing decisions.
pub fn sigma_moe(
    x: &Tensor,
    router: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    k: usize,
) -> Result<(Tensor, Routing), OpError> {
    let (n_e, d, g) = expert_dims(keys)?;
    values.expect_shape("sigma_moe values", &[n_e, g, d])?;
    let routing = sigmoid_topk(x, router, 1, k)?;
    let mut out = Vec::with_capacity(x.rows() * d);
    for r in 0..x.rows() {
        let mut acc = vec![0f64; d];
        for (e, gate) in routing.selected(r, 0) {
            let hidden: Vec<f32> = matmul_rows(x.row(r), expert(keys, e, d * g), d, g)
                .iter()
                .map(|&v| (v as f32).max(0.0))
                .collect();
            let y = matmul_rows(&hidden, expert(values, e, g * d), g, d);
            acc.iter_mut()
                .zip(y)
                .for_each(|(a, v)| *a += gate as f64 * v);
        }
        out.extend(acc.iter().map(|&v| v as f32));
    }
    Ok((Tensor::new(vec![x.rows(), d], out)?, routing))
}

/// The `[a, b]` matrix of expert `e` in a `[N, a, b]` tensor, as a slice of `size = a*b`.
pub fn expert(t: &Tensor, e: usize, size: usize) -> &[f32] {
    &t.data()[e * size..(e + 1) * size]
}

fn expert_dims(keys: &Tensor) -> Result<(usize, usize, usize), OpError> {
    match *keys.shape() {
        [n, d, g] => Ok((n, d, g)),
        _ => Err(OpError::Shape {
            what: "sigma_moe keys".into(),
            expected: "[N_E, D, G]".into(),
            got: format!("{:?}", keys.shape()),
        }),
    }
}
