//! Rust errors as Python exceptions: the type from what went wrong (a missing file is
//! `FileNotFoundError`, a device that is not there `RuntimeError`, bad input `ValueError`), the
//! message exactly what the CLI prints after `error: ` (`switchhead_cli::one_line`: the cause
//! chain on one line, causes the line already holds skipped).

use std::error::Error;
use std::io::ErrorKind;

use pyo3::PyErr;
use pyo3::exceptions::{
    PyFileNotFoundError, PyOSError, PyPermissionError, PyRuntimeError, PyValueError,
};
use switchhead_runtime::RuntimeError;

/// `e` as the fitting Python exception.
pub fn err<E: Error + Send + Sync + 'static>(e: E) -> PyErr {
    from_anyhow(anyhow::Error::new(e))
}

/// `e` after `context` (as the CLI's `.with_context`, e.g. the model path).
pub fn with_context<E: Error + Send + Sync + 'static>(e: E, context: String) -> PyErr {
    from_anyhow(anyhow::Error::new(e).context(context))
}

/// An error of the CLI's (with its context) as the fitting exception, with its one line.
pub fn from_anyhow(e: anyhow::Error) -> PyErr {
    let line = switchhead_cli::one_line(&e);
    let chain = || e.chain();
    if let Some(io) = chain().find_map(|c| c.downcast_ref::<std::io::Error>()) {
        return match io.kind() {
            ErrorKind::NotFound => PyFileNotFoundError::new_err(line),
            ErrorKind::PermissionDenied => PyPermissionError::new_err(line),
            _ => PyOSError::new_err(line),
        };
    }
    let device = chain()
        .find_map(|c| c.downcast_ref::<RuntimeError>())
        .is_some_and(|r| {
            matches!(
                r,
                RuntimeError::BackendUnavailable { .. } | RuntimeError::Execution { .. }
            )
        });
    match device {
        true => PyRuntimeError::new_err(line),
        false => PyValueError::new_err(line),
    }
}
