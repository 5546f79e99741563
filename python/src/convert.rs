//! numpy arrays in and out: token batches (int64 `[batch, seq]`, or a list of ids for one
//! sequence), logits (float32 `[batch, seq, vocab]`) and XL memory (a list of float32
//! `[batch, mem_len, d_model]` arrays, one per layer).

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray2, PyReadonlyArray3, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use switchhead_runtime::{Logits, TokenBatch, XlMemory};

/// `tokens` as a batch: an int64 numpy array `[batch, seq]`, or a sequence of ints (batch 1).
pub fn tokens(tokens: &Bound<'_, PyAny>) -> PyResult<TokenBatch> {
    if let Ok(array) = tokens.extract::<PyReadonlyArray2<'_, i64>>() {
        let [batch, seq] = [array.shape()[0], array.shape()[1]];
        let ids = array.as_array().iter().copied().collect();
        return Ok(TokenBatch {
            batch,
            seq,
            tokens: ids,
        });
    }
    if is_ndarray(tokens) {
        return Err(PyTypeError::new_err(
            "tokens must be an int64 numpy array of shape [batch, seq]",
        ));
    }
    match tokens.extract::<Vec<i64>>() {
        Ok(ids) => Ok(TokenBatch::single(ids)),
        Err(_) => Err(PyTypeError::new_err(
            "tokens must be an int64 numpy array [batch, seq] or a list of token ids",
        )),
    }
}

fn is_ndarray(obj: &Bound<'_, PyAny>) -> bool {
    obj.hasattr("dtype").unwrap_or(false) && obj.hasattr("shape").unwrap_or(false)
}

/// `logits` as a float32 numpy array `[batch, seq, vocab]`.
pub fn logits<'py>(py: Python<'py>, logits: Logits) -> PyResult<Bound<'py, PyAny>> {
    let shape = [logits.batch, logits.seq, logits.vocab];
    Ok(PyArray1::from_vec(py, logits.data)
        .reshape(shape)?
        .into_any())
}

/// A list of per-layer float32 arrays as XL memory (an empty list: empty memory, `None`).
pub fn memory(layers: &Bound<'_, PyAny>) -> PyResult<Option<XlMemory>> {
    let layers: Vec<PyReadonlyArray3<'_, f32>> = layers.extract().map_err(|_| {
        PyTypeError::new_err(
            "memory must be a list of float32 numpy arrays [batch, mem_len, d_model], one per layer",
        )
    })?;
    let Some(first) = layers.first() else {
        return Ok(None);
    };
    let shape = first.shape().to_vec();
    if layers.iter().any(|l| l.shape() != shape.as_slice()) {
        return Err(PyValueError::new_err(
            "memory: every layer must have the same shape [batch, mem_len, d_model]",
        ));
    }
    Ok(Some(XlMemory {
        batch: shape[0],
        mem_len: shape[1],
        d_model: shape[2],
        layers: layers
            .iter()
            .map(|l| l.as_array().iter().copied().collect())
            .collect(),
    }))
}

/// `memory` as a list of float32 numpy arrays `[batch, mem_len, d_model]`.
pub fn memory_out<'py>(py: Python<'py>, memory: XlMemory) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let shape = [memory.batch, memory.mem_len, memory.d_model];
    memory
        .layers
        .into_iter()
        .map(|l| Ok(PyArray1::from_vec(py, l).reshape(shape)?.into_any()))
        .collect()
}
