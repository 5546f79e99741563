//! Errors of the reference implementations.

/// What went wrong in an op.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum OpError {
    /// An input had the wrong shape.
    #[error("{what}: expected shape {expected}, got {got}")]
    Shape {
        what: String,
        expected: String,
        got: String,
    },
    /// An attribute is outside what the op supports.
    #[error("{op}: invalid attribute {attr}: {reason}")]
    Attribute {
        op: &'static str,
        attr: &'static str,
        reason: String,
    },
    /// A token or expert index is out of range.
    #[error("{what}: index {index} out of range (must be < {limit})")]
    Index {
        what: String,
        index: i64,
        limit: usize,
    },
}
