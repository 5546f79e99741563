//! Errors of checkpoint import.
//!
//! Every variant names the file it is about and, where there is one, the tensor or config
//! key, plus what was expected and what was found. Each `Display` is one line.

use std::path::PathBuf;

/// Why a checkpoint could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be opened or read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is truncated or not in the format its name says.
    #[error("{}: corrupt or truncated checkpoint: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// The MODEL path is neither a checkpoint nor a directory holding exactly one.
    #[error("{}: {reason}", path.display())]
    BadPath { path: PathBuf, reason: String },
    /// No config was found anywhere.
    #[error("{}: no model config found (looked in {looked})", path.display())]
    MissingConfig { path: PathBuf, looked: String },
    /// The config is malformed: unknown or missing key, or an invalid value.
    #[error("{}: bad config: {reason}", path.display())]
    BadConfig { path: PathBuf, reason: String },
    /// A tensor the config requires is absent.
    #[error("{}: missing tensor {tensor}", path.display())]
    MissingTensor { path: PathBuf, tensor: String },
    /// A tensor that the config's model does not have.
    #[error(
        "{}: unexpected tensor {tensor} (not part of the model the config describes: check \
         attention, pos_encoding, ffn and n_experts)",
        path.display()
    )]
    UnexpectedTensor { path: PathBuf, tensor: String },
    /// A tensor has a shape that no single config value explains.
    #[error("{}: tensor {tensor} has shape {got:?}, expected {expected}", path.display())]
    ShapeMismatch {
        path: PathBuf,
        tensor: String,
        /// The expected shape with the meaning of each axis, e.g.
        /// `[6, 8, 4] = [n_heads*n_experts, d_model, d_head]`.
        expected: String,
        got: Vec<usize>,
    },
    /// A config value disagrees with what the tensor shapes say.
    #[error(
        "{}: config says {key} = {config_value} but {tensor} has shape {shape:?} (implies {key} = {from_shapes})",
        path.display()
    )]
    ConfigContradiction {
        path: PathBuf,
        /// Config key or product of keys, e.g. `d_model` or `n_heads*d_head`.
        key: &'static str,
        config_value: usize,
        from_shapes: usize,
        tensor: String,
        shape: Vec<usize>,
    },
    /// The checkpoint has a different number of layers than the config.
    #[error(
        "{}: config says n_layers = {config_value} but the checkpoint has tensors for {found} layers (e.g. {tensor})",
        path.display()
    )]
    LayerCount {
        path: PathBuf,
        config_value: usize,
        found: usize,
        tensor: String,
    },
    /// A weight holds NaN or infinity.
    #[error("{}: tensor {tensor} holds a non-finite value (NaN or Inf) at element {index}", path.display())]
    NonFinite {
        path: PathBuf,
        tensor: String,
        index: usize,
    },
    /// A tensor's element type is not f32, f16 or bf16.
    #[error("{}: tensor {tensor} has dtype {dtype}; only f32, f16 and bf16 are supported", path.display())]
    UnsupportedDtype {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },
    /// A feature of the checkpoint that this importer does not support.
    #[error("{}: unsupported: {what}", path.display())]
    Unsupported { path: PathBuf, what: String },
}
