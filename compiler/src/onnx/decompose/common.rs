//! Helpers shared by the decompositions.

use crate::onnx::builder::{Builder, attr_i, attr_ints};

/// `x @ w^T` for a 2-D weight `w [out, in]`.
pub fn matmul_t(b: &mut Builder, x: &str, w: &str) -> String {
    let wt = b.op("Transpose", &[w], vec![]);
    b.op("MatMul", &[x, &wt], vec![])
}

/// Reshape to a constant shape (0 copies the input's axis, so empty axes stay valid).
pub fn reshape(b: &mut Builder, x: &str, shape: &[i64]) -> String {
    let s = b.ints(shape);
    b.op("Reshape", &[x, &s], vec![])
}

/// Transpose with `perm`.
pub fn transpose(b: &mut Builder, x: &str, perm: &[i64]) -> String {
    b.op("Transpose", &[x], vec![attr_ints("perm", perm)])
}

/// Unsqueeze at `axes`.
pub fn unsqueeze(b: &mut Builder, x: &str, axes: &[i64]) -> String {
    let a = b.ints(axes);
    b.op("Unsqueeze", &[x, &a], vec![])
}

/// Axis `axis` of `x`'s shape as an int64 scalar.
pub fn dim(b: &mut Builder, x: &str, axis: i64) -> String {
    let s = b.op("Shape", &[x], vec![]);
    let i = b.scalar_i64(axis);
    b.op("Gather", &[&s, &i], vec![attr_i("axis", 0)])
}

/// `x[.., start..end]` on `axis`.
pub fn slice(b: &mut Builder, x: &str, axis: i64, start: i64, end: i64) -> String {
    let (s, e, a) = (b.ints(&[start]), b.ints(&[end]), b.ints(&[axis]));
    b.op("Slice", &[x, &s, &e, &a], vec![])
}

/// Two-input op shorthand.
pub fn bin(b: &mut Builder, op: &str, x: &str, y: &str) -> String {
    b.op(op, &[x, y], vec![])
}

/// Cast to an ONNX data type.
pub fn cast(b: &mut Builder, x: &str, to: i32) -> String {
    b.op("Cast", &[x], vec![attr_i("to", i64::from(to))])
}
