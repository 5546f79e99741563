//! `Linear { bias }` -> `MatMul(x, Transpose(w))` (+ `Add(bias)`).

use super::common::{bin, matmul_t};
use crate::onnx::builder::Builder;

/// Inputs x, weight `[out, in]`, bias `[out]` if `bias`.
pub fn linear(b: &mut Builder, i: &[&str], bias: bool) -> String {
    let y = matmul_t(b, i[0], i[1]);
    match bias {
        true => bin(b, "Add", &y, i[2]),
        false => y,
    }
}
