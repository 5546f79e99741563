//! switchhead-ops: the op vocabulary of SwitchHead models, once.
//!
//! One module per op: its contract (`///` on the function: inputs, attributes, shapes), shape
//! checks, and a plain reference implementation in f32 with f64 accumulation. These are the
//! numerics every executor is checked against; clarity wins over speed here.
//!
//! Shapes: `T` query length, `Tk` key length (memory + current), `D` model width, `H` heads,
//! `E` experts per head, `k` active experts, `dh` head width.

mod error;
mod tensor;

pub mod attention;
pub mod embedding;
pub mod ffn;
pub mod layer_norm;
pub mod linear;
pub mod moe_attention;
pub mod op;
pub mod plan;
pub mod rope;
pub mod router;
pub mod sigma_moe;
pub mod xl_pos;

pub use error::OpError;
pub use tensor::Tensor;

/// Dot product of two equal-length slices, accumulated in f64.
pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// Logistic sigmoid in f64.
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}
