//! Errors of the kernels: bad shapes and unsupported attributes, never panics.

/// What went wrong in a kernel call.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum KernelError {
    /// An input slice does not have the size its shape implies.
    #[error("{what}: expected {expected}, got {got}")]
    Shape {
        what: &'static str,
        expected: String,
        got: String,
    },
    /// An attribute value the kernel does not support.
    #[error("{op}: unsupported attribute {attr}: {reason}")]
    Attribute {
        op: &'static str,
        attr: &'static str,
        reason: String,
    },
}

impl KernelError {
    pub(crate) fn attr(op: &'static str, attr: &'static str, reason: impl Into<String>) -> Self {
        KernelError::Attribute {
            op,
            attr,
            reason: reason.into(),
        }
    }
}

/// Checks that `data` holds `expected` elements.
pub(crate) fn check_len(
    what: &'static str,
    data: &[f32],
    expected: usize,
) -> Result<(), KernelError> {
    if data.len() == expected {
        return Ok(());
    }
    Err(KernelError::Shape {
        what,
        expected: format!("{expected} elements"),
        got: format!("{} elements", data.len()),
    })
}
