//! switchhead-runtime: load a compiled SwitchHead ONNX file and run it.
//!
//! [`Session::load`] reads the file, checks its interface (`tokens` in, `logits` out, and for
//! Transformer-XL models `memory.{i}` in / `memory_out.{i}` out) and its custom domain
//! (`ai.switchhead`, version 1), and hands it to a [`backend::Backend`]. The CPU backend is
//! tract with our `MoEAttention` / `SigmaMoE` ops registered (kernels from
//! `switchhead-kernels`); the model is typed with symbolic batch / seq / mem_len and
//! optimised once at load. A `.shplan` file (`switchhead_ops::plan`) runs on the
//! [`native`] executor instead: our kernels, weights used in place from a memory map. Errors are typed ([`RuntimeError`]); nothing here panics on input.

mod alloc;
mod decoder;
mod error;
mod info;
mod options;
mod session;
mod tensors;

pub mod backend;
pub mod native;
pub mod onnx;
pub mod sample;
pub mod tokenizer;

pub use alloc::tune_allocator;
pub use decoder::Decoder;
pub use error::RuntimeError;
pub use info::{KvShape, ModelInfo};
pub use options::{BackendKind, DeviceDType, SessionOptions};
pub use session::Session;
pub use switchhead_kernels::kernel_paths;
pub use tensors::{KvCache, Logits, TokenBatch, XlMemory};
pub use tokenizer::{DecodeStream, Encoding, Tokenizer, TokenizerError};
