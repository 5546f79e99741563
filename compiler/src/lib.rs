//! switchhead-compiler: checkpoint import, the reference executor, and (later) the IR,
//! passes and emission.
//!
//! Flow: [`import::load_model`] reads a checkpoint and its config into a [`model::Model`]
//! whose weights carry canonical names ([`names`]); [`reference`] runs it end to end.

pub mod atomic;
pub mod compile;
pub mod config;
pub mod error;
pub mod genai;
pub mod import;
pub mod ir;
pub mod model;
pub mod names;
pub mod onnx;
pub mod passes;
pub mod plan;
pub mod reference;
pub mod synth;
pub mod tensor_io;

pub use config::Config;
pub use error::ImportError;
pub use model::Model;
