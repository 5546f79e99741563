//! Position encodings of `MoEAttention`: RoPE rotation and the Transformer-XL relative term.
//!
//! Angles are computed in float64 (`Cast`, `Mul`, `Sin`, `Cos`) from dynamic `Range`s and
//! cast to float32, as the reference computes them in f64.

use super::common::{bin, cast, reshape, slice, transpose, unsqueeze};
use crate::onnx::builder::{Builder, attr_i};
use crate::onnx::proto::data_type;

/// `[L, n]` f32 (sin, cos) of `pos[:, None] * freq[None, :]` for int64 positions `[L]`.
fn sin_cos(b: &mut Builder, pos: &str, freq: &[f64]) -> (String, String) {
    let p = cast(b, pos, data_type::DOUBLE);
    let p = unsqueeze(b, &p, &[1]);
    let f = b.doubles(freq);
    let angle = bin(b, "Mul", &p, &f);
    let sin = b.op("Sin", &[&angle], vec![]);
    let cos = b.op("Cos", &[&angle], vec![]);
    (
        cast(b, &sin, data_type::FLOAT),
        cast(b, &cos, data_type::FLOAT),
    )
}

/// Rotates the first `n_rot` channels of x `[B, H, L, dh]` (half-split, NeoX) for positions
/// `pos` (int64 `[L]`); channels from n_rot on pass unchanged.
pub fn rope(b: &mut Builder, x: &str, pos: &str, n_rot: usize, d_head: usize, base: f64) -> String {
    let half = n_rot / 2;
    let freq: Vec<f64> = (0..half)
        .map(|i| base.powf(-(2.0 * i as f64) / n_rot as f64))
        .collect();
    let (sin, cos) = sin_cos(b, pos, &freq);
    let x1 = slice(b, x, 3, 0, half as i64);
    let x2 = slice(b, x, 3, half as i64, n_rot as i64);
    let (a, c) = (bin(b, "Mul", &x1, &cos), bin(b, "Mul", &x2, &sin));
    let o1 = bin(b, "Sub", &a, &c);
    let (a, c) = (bin(b, "Mul", &x2, &cos), bin(b, "Mul", &x1, &sin));
    let o2 = bin(b, "Add", &a, &c);
    let mut parts = vec![o1, o2];
    if n_rot < d_head {
        parts.push(slice(b, x, 3, n_rot as i64, d_head as i64));
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    b.op("Concat", &refs, vec![attr_i("axis", 3)])
}

/// Scalars a decomposition shares: query length T, key length Tk, 0 and 1.
pub struct Lengths {
    pub t: String,
    pub tk: String,
    pub zero: String,
    pub one: String,
}

/// The XL term `[B, H, T, Tk]`: entry (r, c) is `q_r . Kp(c - r - (Tk - T))`, with
/// `Kp(p) = (s * pe(p)) @ Wpk^T` and `pe` the interleaved sin/cos over D. Kp is built for
/// p in `-(Tk-1)..=T`, `q . Kp` for all of them, then the XL shift ([`shift`]) picks
/// column `c - r + T - 1` of each row. q is `[B, H, T, dh]`
/// with `(heads, dh)` given; D = `d` (even).
pub fn xl_term(
    b: &mut Builder,
    q: &str,
    wpk: &str,
    scale: &str,
    len: &Lengths,
    (heads, dh): (i64, i64),
    d: usize,
) -> String {
    // Positions -(Tk-1) ..= T (P = Tk + T rows); the positive ones only land on masked
    // entries. Covering them lets the Transformer-XL shift pick every entry by slicing.
    let lo = bin(b, "Sub", &len.one, &len.tk);
    let hi = bin(b, "Add", &len.t, &len.one);
    let p = b.op("Range", &[&lo, &hi, &len.one], vec![]);
    let freq: Vec<f64> = (0..d / 2)
        .map(|i| 10000f64.powf(-(2.0 * i as f64) / d as f64))
        .collect();
    let (sin, cos) = sin_cos(b, &p, &freq);
    let (sin, cos) = (unsqueeze(b, &sin, &[2]), unsqueeze(b, &cos, &[2]));
    let pe = b.op("Concat", &[&sin, &cos], vec![attr_i("axis", 2)]);
    let pe = reshape(b, &pe, &[0, d as i64]);
    let pe = bin(b, "Mul", &pe, scale);
    let wt = b.op("Transpose", &[wpk], vec![]);
    let kp = bin(b, "MatMul", &pe, &wt);
    let kp = reshape(b, &kp, &[0, heads, dh]);
    let kp = transpose(b, &kp, &[1, 2, 0]);
    let rel = bin(b, "MatMul", q, &kp);
    shift(b, &rel, len)
}

/// The XL shift: `out[.., r, c] = rel[.., r, c + T - 1 - r]` for `rel` `[B, H, T, P]`,
/// `P = Tk + T`. Row-major, that element sits at `r*(P-1) + c` after dropping the first
/// `T - 1` elements of each (b, h) block, so: flatten, slice, reshape to `[.., T, P-1]`,
/// keep the first Tk columns. Only shapes and slices, no gather index.
fn shift(b: &mut Builder, rel: &str, len: &Lengths) -> String {
    let flat = reshape(b, rel, &[0, 0, -1]);
    let tm1 = bin(b, "Sub", &len.t, &len.one);
    let width = bin(b, "Add", &len.tk, &tm1);
    let count = bin(b, "Mul", &len.t, &width);
    let end = bin(b, "Add", &tm1, &count);
    let sliced = slice_dyn(b, &flat, 2, &tm1, &end);
    let t = unsqueeze(b, &len.t, &[0]);
    let w = unsqueeze(b, &width, &[0]);
    let keep = b.ints(&[0, 0]);
    let shape = b.op("Concat", &[&keep, &t, &w], vec![attr_i("axis", 0)]);
    let rows = b.op("Reshape", &[&sliced, &shape], vec![]);
    slice_dyn(b, &rows, 3, &len.zero, &len.tk)
}

/// `x[start..end]` on `axis`, with scalar int64 bounds computed at run time.
fn slice_dyn(b: &mut Builder, x: &str, axis: i64, start: &str, end: &str) -> String {
    let (start, end) = (unsqueeze(b, start, &[0]), unsqueeze(b, end, &[0]));
    let axes = b.ints(&[axis]);
    b.op("Slice", &[x, &start, &end, &axes], vec![])
}

/// Boolean `[T, Tk]`, true where key c is hidden from query r (`c > r + Tk - T`).
pub fn causal_hidden(b: &mut Builder, len: &Lengths) -> String {
    let off = bin(b, "Sub", &len.tk, &len.t);
    let rows = b.op("Range", &[&off, &len.tk, &len.one], vec![]);
    let cols = b.op("Range", &[&len.zero, &len.tk, &len.one], vec![]);
    let rows = unsqueeze(b, &rows, &[1]);
    let cols = unsqueeze(b, &cols, &[0]);
    bin(b, "Greater", &cols, &rows)
}
