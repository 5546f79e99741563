//! `switchhead._native`: the Rust half of the `switchhead` Python package (PyO3).
//!
//! [`compile`] lowers a checkpoint (a path, or in-memory tensors with a config) to ONNX or a
//! native plan through the compiler's one compile sequence; [`session::PySession`] opens a
//! checkpoint, ONNX file or plan as the CLI does and runs it: logits, a stateful decoder and
//! streamed generation. Every call that computes releases the GIL. Errors become Python
//! exceptions ([`errors`]) with the CLI's one-line messages; nothing here panics on input.

mod compile;
mod convert;
mod decoder;
mod errors;
mod generate;
mod open;
mod session;

use pyo3::prelude::*;

/// The native module; `switchhead/__init__.py` re-exports it.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(compile::compile, m)?)?;
    m.add_class::<session::PySession>()?;
    m.add_class::<decoder::PyDecoder>()?;
    m.add_class::<generate::Generator>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
