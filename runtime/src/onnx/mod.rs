//! Our ONNX dialect: the `ai.switchhead` domain, its checks, and its ops for tract.

mod attributes;
mod check;
mod moe_attention_op;
mod names;
mod register;
mod sigma_moe_op;

pub use attributes::{moe_attention_attrs, sigma_moe_attrs};
pub use check::check_model;
pub use names::{DOMAIN, DOMAIN_VERSION, MOE_ATTENTION, SIGMA_MOE};
pub use register::switchhead_onnx;
