//! `Softmax { axis }` -> `Softmax` (opset 13+ per-axis semantics).

use crate::onnx::builder::{Builder, attr_i};

/// Input x.
pub fn softmax(b: &mut Builder, i: &[&str], axis: i64) -> String {
    b.op("Softmax", &[i[0]], vec![attr_i("axis", axis)])
}
