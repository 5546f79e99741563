//! `Relu` -> `Relu`.

use crate::onnx::builder::Builder;

/// Input x.
pub fn relu(b: &mut Builder, i: &[&str]) -> String {
    b.op("Relu", &[i[0]], vec![])
}
