//! The runtime's error type: one structured variant per way loading or running can fail.

use std::path::PathBuf;

/// Everything that can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A `.shplan` file is not a valid plan (not a plan, truncated, corrupt, newer format,
    /// or a graph the native executor cannot run).
    #[error("{path}: invalid plan: {reason}")]
    InvalidPlan { path: PathBuf, reason: String },
    /// An ONNX file a device executor cannot run as the plan it embeds (none embedded, or an
    /// initializer that does not match it).
    #[error("{path}: cannot run this ONNX file on a device executor: {reason}")]
    OnnxNotPlan { path: PathBuf, reason: String },
    /// The file is not an ONNX model.
    #[error("{path} is not an ONNX model: {reason}")]
    NotOnnx { path: PathBuf, reason: String },
    /// The model imports a version of our domain this runtime does not implement.
    #[error(
        "the model imports operator set {domain} version {version}; this runtime supports version {supported}"
    )]
    UnsupportedDomainVersion {
        domain: String,
        version: i64,
        supported: i64,
    },
    /// A node uses a domain the model does not import or this runtime does not know.
    #[error("node {node:?} ({op_type}) is in domain {domain:?}, {reason}")]
    UnsupportedDomain {
        node: String,
        op_type: String,
        domain: String,
        reason: String,
    },
    /// An operator this runtime does not implement.
    #[error("node {node:?}: unknown operator {domain}::{op_type}")]
    UnknownOp {
        node: String,
        op_type: String,
        domain: String,
    },
    /// A node attribute is missing or has a value the op does not support.
    #[error("node {node:?} ({op_type}): attribute {attr}: {reason}")]
    InvalidAttribute {
        node: String,
        op_type: &'static str,
        attr: &'static str,
        reason: String,
    },
    /// The model's inputs or outputs are not the runtime's interface.
    #[error("model interface: {reason}")]
    Interface { reason: String },
    /// The backend failed to prepare the model (typing, optimisation).
    #[error("{backend} backend could not prepare the model: {reason}")]
    Prepare {
        backend: &'static str,
        reason: String,
    },
    /// The requested backend cannot run on this build or host.
    #[error("backend {backend} is unavailable: {reason}")]
    BackendUnavailable {
        backend: &'static str,
        reason: String,
    },
    /// A batch with no tokens.
    #[error("empty input: batch {batch} x seq {seq}")]
    EmptyInput { batch: usize, seq: usize },
    /// A token id outside the vocabulary.
    #[error(
        "token {token} at batch {batch}, position {position} is outside the vocabulary of {vocab}"
    )]
    TokenOutOfRange {
        token: i64,
        batch: usize,
        position: usize,
        vocab: usize,
    },
    /// An input tensor has the wrong shape.
    #[error("{tensor}: expected shape {expected}, got {got}")]
    ShapeMismatch {
        tensor: String,
        expected: String,
        got: String,
    },
    /// XL memory passed to a model without memory, or `forward_chunk` on a non-XL model.
    #[error("{0}")]
    NotXl(String),
    /// `decoder()` on a RoPE model compiled without KV-cache inputs.
    #[error(
        "{path} has no KV-cache inputs, so it cannot decode token by token: compile it with `switchhead-compile --kv-cache`"
    )]
    NoKvCache { path: PathBuf },
    /// The backend failed while running.
    #[error("{backend} backend failed to run the model: {reason}")]
    Execution {
        backend: &'static str,
        reason: String,
    },
}
