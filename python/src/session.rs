//! `switchhead.Session`: one loaded model, shared by any number of Python threads (the
//! runtime's `Session` is `Send + Sync`; every call releases the GIL while it computes).

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use switchhead_cli::open::Opened;
use switchhead_runtime::{BackendKind, Session, Tokenizer};

use crate::convert;
use crate::decoder::PyDecoder;
use crate::errors::{err, with_context};
use crate::generate::{Generator, Prompt, Sampling};
use crate::open::open;

/// A model loaded for running: a checkpoint (a directory or a ``.safetensors`` / ``.pth``
/// file, compiled in memory), an ONNX file from ``switchhead.compile`` or a ``.shplan`` plan.
///
/// ``threads``: worker threads (default: all cores). ``executor``: ``"auto"`` (CUDA, else an
/// OpenCL GPU, when present and able to run the model, else the CPU), ``"cpu"``, ``"cuda"``
/// or ``"opencl"``. One session may be used from several threads at once.
#[pyclass(frozen, module = "switchhead", name = "Session")]
pub struct PySession {
    /// The session (and for a checkpoint the compiled file it runs, removed with it).
    opened: Arc<Opened>,
    /// The path the user named (tokenizers are looked up beside it).
    source: PathBuf,
}

#[pymethods]
impl PySession {
    #[new]
    #[pyo3(signature = (path, *, threads = None, executor = "auto"))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        threads: Option<usize>,
        executor: &str,
    ) -> PyResult<Self> {
        if threads == Some(0) {
            return Err(PyValueError::new_err("threads must be at least 1"));
        }
        let backend = backend(executor)?;
        let opened = py.detach(|| open(&path, threads, backend))?;
        Ok(PySession {
            opened: Arc::new(opened),
            source: path,
        })
    }

    /// Logits for ``tokens`` (int64 ``[batch, seq]``, or a list of ids for one sequence):
    /// float32 ``[batch, seq, vocab]``.
    ///
    /// Transformer-XL models: with ``memory`` (a list of float32 ``[batch, mem_len, d_model]``
    /// arrays, one per memory layer; ``[]`` for none yet) this runs one chunk and returns
    /// ``(logits, memory)``, the memory to pass with the next chunk. Without it they run with
    /// empty memory and return logits alone.
    #[pyo3(signature = (tokens, *, memory = None))]
    fn logits<'py>(
        &self,
        py: Python<'py>,
        tokens: &Bound<'py, PyAny>,
        memory: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let batch = convert::tokens(tokens)?;
        let session = self.session();
        let Some(memory) = memory else {
            let logits = py.detach(|| session.logits(&batch)).map_err(py_err)?;
            return convert::logits(py, logits);
        };
        let memory = convert::memory(memory)?;
        let (logits, next) = py
            .detach(|| session.forward_chunk(&batch, memory.as_ref()))
            .map_err(py_err)?;
        let out = (convert::logits(py, logits)?, convert::memory_out(py, next)?);
        Ok(out.into_pyobject(py)?.into_any())
    }

    /// A stateful decoder over this session for ``batch`` sequences: ``step(tokens)`` feeds
    /// tokens and returns their logits, keeping the KV cache (RoPE) or memory (XL) between
    /// steps.
    #[pyo3(signature = (batch = 1))]
    fn decoder(&self, batch: usize) -> PyResult<PyDecoder> {
        PyDecoder::new(self.opened.clone(), batch).map_err(|e| self.with_path(e))
    }

    /// Generates up to ``max_tokens`` tokens after ``prompt``, as an iterator that yields each
    /// as it is made: text (``str``) for a text prompt, encoded with the model's tokenizer;
    /// token ids (``int``) for a list of ids. ``temperature`` 0 is greedy; above it, nucleus
    /// sampling keeps the most likely tokens up to ``top_p`` of the probability, drawn with
    /// ``seed`` (the same seed gives the same tokens). ``tokenizer``: a ``tokenizer.json`` or
    /// SentencePiece ``.model`` instead of the one beside the model.
    #[pyo3(signature = (prompt, max_tokens, temperature = 0.0, top_p = 1.0, seed = None, *, tokenizer = None))]
    #[allow(clippy::too_many_arguments)]
    fn generate(
        &self,
        py: Python<'_>,
        prompt: &Bound<'_, PyAny>,
        max_tokens: usize,
        temperature: f32,
        top_p: f32,
        seed: Option<u64>,
        tokenizer: Option<PathBuf>,
    ) -> PyResult<Generator> {
        let sampling = Sampling::new(temperature, top_p, seed.unwrap_or(0))?;
        let prompt = match prompt.extract::<String>() {
            Ok(text) => Prompt::Text(text, self.tokenizer(py, tokenizer)?),
            Err(_) => Prompt::Ids(prompt.extract::<Vec<i64>>().map_err(|_| {
                pyo3::exceptions::PyTypeError::new_err(
                    "prompt must be a str or a list of token ids",
                )
            })?),
        };
        let decoder = self.decoder(1)?;
        Generator::start(py, decoder, prompt, max_tokens, sampling)
    }

    /// ``text`` as token ids, with the model's tokenizer (or ``tokenizer``).
    #[pyo3(signature = (text, *, tokenizer = None))]
    fn encode(&self, py: Python<'_>, text: &str, tokenizer: Option<PathBuf>) -> PyResult<Vec<i64>> {
        self.tokenizer(py, tokenizer)?.encode(text).map_err(err)
    }

    /// The text of token ids ``ids``, with the model's tokenizer (or ``tokenizer``).
    #[pyo3(signature = (ids, *, tokenizer = None))]
    fn decode(
        &self,
        py: Python<'_>,
        ids: Vec<i64>,
        tokenizer: Option<PathBuf>,
    ) -> PyResult<String> {
        self.tokenizer(py, tokenizer)?.decode(&ids).map_err(err)
    }

    /// Vocabulary size.
    #[getter]
    fn vocab_size(&self) -> usize {
        self.session().vocab_size()
    }

    /// Number of layers.
    #[getter]
    fn n_layers(&self) -> usize {
        self.session().n_layers()
    }

    /// Model width.
    #[getter]
    fn d_model(&self) -> usize {
        self.session().d_model()
    }

    /// True for Transformer-XL models (they carry memory between chunks).
    #[getter]
    fn is_xl(&self) -> bool {
        self.session().is_xl()
    }

    /// The backend running the model (``"cpu"``, ``"native"``, ``"cuda"``, ``"opencl"``).
    #[getter]
    fn backend(&self) -> &'static str {
        self.session().backend_name()
    }

    /// The path the session was opened from.
    #[getter]
    fn path(&self) -> String {
        self.source.display().to_string()
    }

    fn __repr__(&self) -> String {
        format!(
            "Session({:?}, backend={:?}, vocab_size={})",
            self.source.display().to_string(),
            self.session().backend_name(),
            self.session().vocab_size()
        )
    }
}

impl PySession {
    fn session(&self) -> &Session {
        &self.opened.session
    }

    /// The model's tokenizer (`explicit`, else the one beside the model, else bytes).
    fn tokenizer(&self, py: Python<'_>, explicit: Option<PathBuf>) -> PyResult<Tokenizer> {
        let vocab = self.session().vocab_size();
        py.detach(|| Tokenizer::for_model(&self.source, explicit.as_deref(), vocab))
            .map_err(err)
    }

    /// A runtime error with the model path first, as the CLI's `run` reports it.
    fn with_path(&self, e: switchhead_runtime::RuntimeError) -> PyErr {
        with_context(e, self.source.display().to_string())
    }
}

fn py_err(e: switchhead_runtime::RuntimeError) -> PyErr {
    err(e)
}

/// The runtime backend an `executor` names.
fn backend(executor: &str) -> PyResult<BackendKind> {
    match executor {
        "auto" => Ok(BackendKind::Auto),
        "cpu" => Ok(BackendKind::Cpu),
        "cuda" => Ok(BackendKind::Cuda),
        "opencl" => Ok(BackendKind::OpenCl),
        other => Err(PyValueError::new_err(format!(
            "executor must be \"auto\", \"cpu\", \"cuda\" or \"opencl\", not {other:?}"
        ))),
    }
}
