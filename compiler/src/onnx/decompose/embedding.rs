//! `Embedding` -> `Gather(table, tokens, axis 0)`.

use crate::onnx::builder::{Builder, attr_i};

/// Inputs tokens i64 `[B, T]`, table `[V, D]`.
pub fn embedding(b: &mut Builder, i: &[&str]) -> String {
    b.op("Gather", &[i[1], i[0]], vec![attr_i("axis", 0)])
}
