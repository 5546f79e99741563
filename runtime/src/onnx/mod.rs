//! Our ONNX dialect: the `ai.switchhead` domain, its checks, and its ops for tract; constant
//! `DequantizeLinear` weights folded to f32; and an ONNX file run as the plan it embeds (for
//! the device executors).

mod attributes;
mod check;
mod dequantize;
mod moe_attention_op;
mod names;
mod plan;
mod register;
mod sigma_moe_op;

pub use attributes::{moe_attention_attrs, sigma_moe_attrs};
pub use check::check_model;
pub use dequantize::fold_dequantize;
pub use names::{DOMAIN, DOMAIN_VERSION, MOE_ATTENTION, SIGMA_MOE};
pub(crate) use plan::plan_map;
pub use plan::{PLAN_GRAPH_KEY, verify_embedded_plan};
pub use register::switchhead_onnx;
