//! `Add` -> `Add`.

use crate::onnx::builder::Builder;

/// Inputs a, b.
pub fn add(b: &mut Builder, i: &[&str]) -> String {
    b.op("Add", &[i[0], i[1]], vec![])
}
