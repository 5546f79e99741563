//! `DenseFfn`: `linear2(relu(linear1(x)))`, both linears with bias.
//!
//! Inputs: x `[.., D]`, w1 `[d_ff, D]`, b1 `[d_ff]`, w2 `[D, d_ff]`, b2 `[D]`. Output `[.., D]`.

use crate::linear::linear;
use crate::{OpError, Tensor};

/// The dense ReLU feed-forward block.
pub fn dense_ffn(
    x: &Tensor,
    w1: &Tensor,
    b1: &Tensor,
    w2: &Tensor,
    b2: &Tensor,
) -> Result<Tensor, OpError> {
    let mut h = linear(x, w1, Some(b1))?;
    relu_in_place(&mut h);
    linear(&h, w2, Some(b2))
}

/// `max(x, 0)` element-wise.
pub fn relu_in_place(x: &mut Tensor) {
    x.data_mut().iter_mut().for_each(|v| *v = v.max(0.0));
}
