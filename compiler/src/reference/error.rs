//! Errors of the reference executor.

use crate::ImportError;
use switchhead_ops::OpError;

/// What went wrong while running a model.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The input holds no tokens.
    #[error("empty input: {what}")]
    EmptyInput { what: String },
    /// A token id is outside the vocabulary.
    #[error(
        "token id {id} at batch {batch}, position {position} is outside the vocabulary 0..{vocab}"
    )]
    TokenOutOfRange {
        id: i64,
        batch: usize,
        position: usize,
        vocab: usize,
    },
    /// The XL memory does not fit the model or the batch.
    #[error("XL memory: {reason}")]
    Memory { reason: String },
    /// The token buffer does not match its declared shape.
    #[error("tokens: {reason}")]
    Tokens { reason: String },
    /// A weight could not be read.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// An op rejected its inputs (names the layer).
    #[error("layer {layer}: {source}")]
    Op { layer: String, source: OpError },
}

/// Attaches the layer name to an op error.
pub(crate) fn in_layer(layer: impl Into<String>) -> impl FnOnce(OpError) -> ExecError {
    let layer = layer.into();
    move |source| ExecError::Op { layer, source }
}
