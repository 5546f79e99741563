//! `Session.generate`: the loop of `switchhead run` as a Python iterator. The prompt is fed
//! when the iterator is made (so a bad prompt raises there); each `__next__` feeds the token
//! yielded before (none the first time), samples the next one and yields it at once, as text
//! for a text prompt (the model's tokenizer, decoded as a stream: bytes of an incomplete
//! character wait for the rest) or as its id.

use std::sync::Mutex;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use switchhead_runtime::sample::Sampler;
use switchhead_runtime::{DecodeStream, RuntimeError, TokenBatch, Tokenizer};

use crate::decoder::{OwnedDecoder, PyDecoder};
use crate::errors::err;

/// What to continue: text (with the tokenizer that encodes it) or token ids.
pub enum Prompt {
    Text(String, Tokenizer),
    Ids(Vec<i64>),
}

/// Checked sampling parameters.
#[derive(Debug, Clone, Copy)]
pub struct Sampling {
    temperature: f32,
    top_p: f32,
    seed: u64,
}

impl Sampling {
    /// The parameters, refused as `switchhead run` refuses them.
    pub fn new(temperature: f32, top_p: f32, seed: u64) -> PyResult<Self> {
        let top_p_ok = top_p > 0.0 && top_p <= 1.0;
        if !top_p_ok || !temperature.is_finite() || temperature < 0.0 {
            return Err(PyValueError::new_err(
                "top_p must be in (0, 1] and temperature a finite number >= 0",
            ));
        }
        Ok(Sampling {
            temperature,
            top_p,
            seed,
        })
    }
}

self_cell::self_cell!(
    /// A tokenizer and a decode stream over it.
    struct OwnedStream {
        owner: Tokenizer,
        #[covariant]
        dependent: DecodeStream,
    }
);

/// Text output: the stream and bytes of a character not yet complete.
struct TextOut {
    stream: OwnedStream,
    pending: Vec<u8>,
}

impl TextOut {
    /// The text `id` completes (empty while a character is incomplete); `last` flushes.
    fn push(&mut self, id: i64, last: bool) -> Result<String, PyErr> {
        let bytes = self
            .stream
            .with_dependent_mut(|_, s| s.step(id))
            .map_err(err)?;
        self.pending.extend_from_slice(&bytes);
        let complete = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(e) if e.error_len().is_none() && !last => e.valid_up_to(),
            Err(_) => self.pending.len(),
        };
        let out: Vec<u8> = self.pending.drain(..complete).collect();
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

/// One yielded item.
enum Item {
    Id(i64),
    Text(String),
}

struct State {
    decoder: OwnedDecoder,
    sampler: Sampler,
    logits: Vec<f32>,
    /// The token yielded last, fed at the next step.
    last: Option<i64>,
    left: usize,
    text: Option<TextOut>,
}

impl State {
    fn next(&mut self) -> PyResult<Option<Item>> {
        if self.left == 0 {
            return Ok(None);
        }
        if let Some(t) = self.last.take() {
            self.logits = feed(&mut self.decoder, vec![t]).map_err(err)?;
        }
        let id = self
            .sampler
            .next(&self.logits)
            .and_then(|t| i64::try_from(t).ok())
            .ok_or_else(|| PyRuntimeError::new_err("the model returned no logits"))?;
        self.left -= 1;
        self.last = Some(id);
        let last = self.left == 0;
        match &mut self.text {
            Some(text) => Ok(Some(Item::Text(text.push(id, last)?))),
            None => Ok(Some(Item::Id(id))),
        }
    }
}

/// The logits of the last of `tokens`, fed to `decoder`.
fn feed(decoder: &mut OwnedDecoder, tokens: Vec<i64>) -> Result<Vec<f32>, RuntimeError> {
    let logits = decoder.step(&TokenBatch::single(tokens))?;
    let row = logits.row(0, logits.seq.saturating_sub(1));
    Ok(row.map(<[f32]>::to_vec).unwrap_or_default())
}

/// The iterator ``Session.generate`` returns: yields each generated token as it is made
/// (``str`` pieces for a text prompt, ``int`` ids for a list of ids).
#[pyclass(frozen, module = "switchhead", name = "Generator")]
pub struct Generator {
    state: Mutex<State>,
}

impl Generator {
    /// Feeds `prompt` to `decoder` (GIL released) and returns the iterator.
    pub fn start(
        py: Python<'_>,
        decoder: PyDecoder,
        prompt: Prompt,
        max_tokens: usize,
        sampling: Sampling,
    ) -> PyResult<Self> {
        let (ids, text) = match prompt {
            Prompt::Ids(ids) => (ids, None),
            Prompt::Text(text, tokenizer) => text_prompt(&text, tokenizer)?,
        };
        if ids.is_empty() {
            return Err(PyValueError::new_err(
                "empty prompt: generation needs at least one token to continue from",
            ));
        }
        let mut decoder = decoder.into_inner()?;
        let logits = py.detach(|| feed(&mut decoder, ids)).map_err(err)?;
        let state = State {
            decoder,
            sampler: Sampler::new(sampling.temperature, sampling.top_p, sampling.seed),
            logits,
            last: None,
            left: max_tokens,
            text,
        };
        Ok(Generator {
            state: Mutex::new(state),
        })
    }
}

/// The ids of `text` and the text output over `tokenizer`.
fn text_prompt(text: &str, tokenizer: Tokenizer) -> PyResult<(Vec<i64>, Option<TextOut>)> {
    if text.is_empty() {
        return Err(PyValueError::new_err(
            "empty prompt: generation needs at least one token to continue from",
        ));
    }
    let ids = tokenizer.encode(text).map_err(err)?;
    if ids.is_empty() {
        return Err(PyValueError::new_err(format!(
            "the prompt encodes to no tokens with the {}",
            tokenizer.describe()
        )));
    }
    let stream = OwnedStream::new(tokenizer, |t| t.stream());
    Ok((
        ids,
        Some(TextOut {
            stream,
            pending: Vec::new(),
        }),
    ))
}

#[pymethods]
impl Generator {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let item = py.detach(|| {
            let mut state = self
                .state
                .lock()
                .map_err(|_| PyRuntimeError::new_err("the generator failed in another thread"))?;
            state.next()
        })?;
        match item {
            None => Ok(None),
            Some(Item::Id(id)) => Ok(Some(id.into_pyobject(py)?.into_any())),
            Some(Item::Text(text)) => Ok(Some(text.into_pyobject(py)?.into_any())),
        }
    }
}
