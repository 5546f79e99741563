//! Choosing the next token from logits: the runtime's sampler ([`switchhead_runtime::sample`]),
//! which the Python package shares.

pub use switchhead_runtime::sample::{Sampler, argmax};
