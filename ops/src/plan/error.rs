//! Why a plan could not be read or written.

/// What is wrong with a plan file (the caller names the file).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// The file does not start with the plan magic.
    #[error("not a switchhead plan (no \\x89SHPLAN magic)")]
    NotAPlan,
    /// The file is shorter than its header says (or than a header).
    #[error("truncated: {what} needs {expected} bytes, the file has {got}")]
    Truncated {
        what: &'static str,
        expected: u64,
        got: u64,
    },
    /// The file was written in a format version this reader does not know.
    #[error(
        "format version {version} was written by a newer switchhead; this reader supports versions up to {supported}"
    )]
    FutureVersion { version: u32, supported: u32 },
    /// A header field is inconsistent.
    #[error("bad header: {0}")]
    Header(String),
    /// The stored checksum does not match the contents.
    #[error(
        "checksum mismatch: stored {stored:#010x}, computed {computed:#010x} (the file is corrupt)"
    )]
    Checksum { stored: u64, computed: u64 },
    /// The graph section is not valid JSON of the schema, or breaks a structural rule.
    #[error("bad graph: {0}")]
    Graph(String),
    /// A weight's bytes are outside the weights section or misaligned.
    #[error("weight {name:?}: {reason}")]
    Weight { name: String, reason: String },
    /// A quantized weight's bytes do not match its [`super::QuantShape`].
    #[error("quantized weight: {0}")]
    Quant(String),
}
