//! `switchhead.Decoder`: the runtime's stateful decoder in a Python object. The runtime's
//! `Decoder` borrows its session, so [`OwnedDecoder`] holds both: the opened session (shared,
//! an `Arc`) and the decoder borrowing it, built safely by `self_cell`. A mutex serialises steps
//! of one decoder (a decoder is one sequence's state; threads share sessions, not decoders).

use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use switchhead_cli::open::Opened;
use switchhead_runtime::{Decoder, Logits, RuntimeError, TokenBatch};

use crate::convert;
use crate::errors::err;

self_cell::self_cell!(
    /// A session and a decoder over it.
    pub struct OwnedDecoder {
        owner: Arc<Opened>,
        #[covariant]
        dependent: Decoder,
    }
);

impl OwnedDecoder {
    /// A decoder of `batch` sequences over `session`.
    pub fn open(session: Arc<Opened>, batch: usize) -> Result<Self, RuntimeError> {
        OwnedDecoder::try_new(session, |s| s.session.decoder_batch(batch))
    }

    /// Feeds `tokens`; their logits.
    pub fn step(&mut self, tokens: &TokenBatch) -> Result<Logits, RuntimeError> {
        self.with_dependent_mut(|_, d| d.step(tokens))
    }

    /// Tokens fed so far per row.
    pub fn position(&self) -> usize {
        self.borrow_dependent().position()
    }
}

/// A stateful decoder (from ``Session.decoder()``): ``step(tokens)`` feeds tokens and returns
/// their logits, each step costing only the new tokens' work (KV cache or XL memory). The
/// logits equal those of one full pass over everything fed (XL: chunked as in training).
#[pyclass(frozen, module = "switchhead", name = "Decoder")]
pub struct PyDecoder {
    inner: Mutex<OwnedDecoder>,
    batch: usize,
}

impl PyDecoder {
    pub(crate) fn new(session: Arc<Opened>, batch: usize) -> Result<Self, RuntimeError> {
        Ok(PyDecoder {
            inner: Mutex::new(OwnedDecoder::open(session, batch)?),
            batch,
        })
    }

    /// Runs `f` on the decoder with the GIL released.
    pub(crate) fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut OwnedDecoder) -> Result<T, RuntimeError> + Send,
    ) -> PyResult<T> {
        py.detach(|| {
            let mut guard = self
                .inner
                .lock()
                .map_err(|_| PyRuntimeError::new_err("the decoder failed in another thread"))?;
            f(&mut guard).map_err(err)
        })
    }
}

#[pymethods]
impl PyDecoder {
    /// Feeds ``tokens`` (int64 ``[batch, seq]``, or a list of ids when the batch is 1) and
    /// returns their logits, float32 ``[batch, seq, vocab]``.
    fn step<'py>(
        &self,
        py: Python<'py>,
        tokens: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let batch = convert::tokens(tokens)?;
        let logits = self.with(py, |d| d.step(&batch))?;
        convert::logits(py, logits)
    }

    /// Tokens fed so far (per sequence).
    #[getter]
    fn position(&self, py: Python<'_>) -> PyResult<usize> {
        self.with(py, |d| Ok(d.position()))
    }

    /// Sequences decoded side by side.
    #[getter]
    fn batch(&self) -> usize {
        self.batch
    }
}

impl PyDecoder {
    /// The decoder itself, for a generator that owns it.
    pub(crate) fn into_inner(self) -> PyResult<OwnedDecoder> {
        self.inner
            .into_inner()
            .map_err(|_| PyRuntimeError::new_err("the decoder failed in another thread"))
    }
}
