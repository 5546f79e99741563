//! The native executor: runs a `.shplan` file (format: `switchhead_ops::plan`) with our CPU
//! kernels, no tract and no ONNX.
//!
//! Loading memory-maps the file, verifies it (magic, version, lengths, checksum, graph) and
//! checks every node against what the executor supports, so a bad file fails at load with
//! [`crate::RuntimeError::InvalidPlan`] naming the file and the problem. f32 weights are
//! used in place from the map (the file must not be modified while a session uses it);
//! f16/bf16 weights are widened once at load. A run walks the op list in order, freeing
//! each intermediate after its last use. Each Transformer-XL attention node keeps its
//! position keys (`[Tk, H*dh]`, computed from its weights for the last key count) between
//! runs: 16.5 MB for `c4-262m` at 512 keys, 33 MB at 1024.

mod backend;
mod exec;
pub mod profile;
mod program;
mod weights;

pub use backend::NativeBackend;
pub(crate) use backend::{is_plan, load_onnx_parts, load_parts, load_session_parts, model_info};
pub(crate) use program::{Program, Step};
pub(crate) use weights::WeightStore;
