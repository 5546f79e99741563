//! `ConcatSeq` -> `Concat` on axis 1 (memory rows first).

use crate::onnx::builder::{Builder, attr_i};

/// Inputs a `[B, M, D]`, b `[B, T, D]`.
pub fn concat_seq(b: &mut Builder, i: &[&str]) -> String {
    b.op("Concat", &[i[0], i[1]], vec![attr_i("axis", 1)])
}
