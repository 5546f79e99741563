//! Rust errors as Python exceptions: the type from what went wrong (a missing file is
//! `FileNotFoundError`, a device that is not there `RuntimeError`, bad input `ValueError`), the
//! message the CLI prints after `error: ` (the cause chain on one line, causes the line
//! already holds skipped).

use std::error::Error;
use std::io::ErrorKind;

use pyo3::exceptions::{
    PyFileNotFoundError, PyOSError, PyPermissionError, PyRuntimeError, PyValueError,
};
use pyo3::prelude::*;
use switchhead_runtime::RuntimeError;

/// `e` as the fitting Python exception, `context` (the CLI's, e.g. the model path) first.
pub fn to_py(e: &(dyn Error + 'static), context: Option<&str>) -> PyErr {
    let line = one_line(e, context);
    if let Some(io) = io_cause(e) {
        return match io.kind() {
            ErrorKind::NotFound => PyFileNotFoundError::new_err(line),
            ErrorKind::PermissionDenied => PyPermissionError::new_err(line),
            _ => PyOSError::new_err(line),
        };
    }
    let unavailable = cause::<RuntimeError>(e).is_some_and(|r| {
        matches!(
            r,
            RuntimeError::BackendUnavailable { .. } | RuntimeError::Execution { .. }
        )
    });
    match unavailable {
        true => PyRuntimeError::new_err(line),
        false => PyValueError::new_err(line),
    }
}

/// [`to_py`] without context, for `map_err`.
pub fn err<E: Error + 'static>(e: E) -> PyErr {
    to_py(&e, None)
}

/// An error of the CLI's (`anyhow`, with its context) as the fitting exception, with the
/// CLI's own one-line message.
pub fn from_anyhow(e: anyhow::Error) -> PyErr {
    let line = switchhead_cli::one_line(&e);
    let kind = to_py(e.as_ref(), None);
    Python::attach(|py| PyErr::from_type(kind.get_type(py), line))
}

/// The cause chain of `e` on one line, as `switchhead_cli::one_line` prints it.
pub fn one_line(e: &(dyn Error + 'static), context: Option<&str>) -> String {
    let mut line = context.unwrap_or_default().to_string();
    let mut next = Some(e);
    while let Some(cause) = next {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        next = cause.source();
    }
    line.replace('\n', " ")
}

fn io_cause<'a>(e: &'a (dyn Error + 'static)) -> Option<&'a std::io::Error> {
    cause::<std::io::Error>(e)
}

/// The first error of type `T` in the chain of `e`.
fn cause<'a, T: Error + 'static>(e: &'a (dyn Error + 'static)) -> Option<&'a T> {
    let mut next = Some(e);
    while let Some(c) = next {
        if let Some(t) = c.downcast_ref::<T>() {
            return Some(t);
        }
        next = c.source();
    }
    None
}
