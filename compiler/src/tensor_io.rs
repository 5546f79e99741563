//! Reading token files and writing result tensors as safetensors.
//!
//! Token files hold int64 `tokens` `[batch, seq]`, or consecutive chunks `tokens0`,
//! `tokens1`, ... (run in order, XL memory carried). Outputs are written atomically: a
//! temporary file beside the target, then a rename, so a failure never leaves a partial file.

use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};
use switchhead_ops::Tensor;

use crate::reference::Tokens;

/// Errors reading inputs or writing outputs.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not a valid safetensors file.
    #[error("{path}: not a valid safetensors file: {reason}")]
    Format { path: PathBuf, reason: String },
    /// A tensor is missing or has the wrong type or shape.
    #[error("{path}: tensor '{tensor}': {reason}")]
    Tensor {
        path: PathBuf,
        tensor: String,
        reason: String,
    },
}

/// Reads a file's bytes, naming it on error.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, IoError> {
    std::fs::read(path).map_err(|source| IoError::Io {
        path: path.into(),
        source,
    })
}

/// Parses safetensors bytes, naming `path` on error.
pub fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<SafeTensors<'a>, IoError> {
    SafeTensors::deserialize(bytes).map_err(|e| IoError::Format {
        path: path.into(),
        reason: e.to_string(),
    })
}

/// The token chunks of a token file: `tokens`, or `tokens0`, `tokens1`, ...
pub fn read_token_chunks(path: &Path) -> Result<Vec<Tokens>, IoError> {
    let bytes = read_bytes(path)?;
    let st = parse(path, &bytes)?;
    let names = chunk_names(&st, "tokens");
    if names.is_empty() {
        let reason = "no 'tokens' (or 'tokens0', 'tokens1', ...) tensor in the file".to_string();
        return Err(IoError::Tensor {
            path: path.into(),
            tensor: "tokens".into(),
            reason,
        });
    }
    names.iter().map(|n| read_tokens(path, &st, n)).collect()
}

/// `base` alone if present, else `base0`, `base1`, ... as long as they exist.
pub fn chunk_names(st: &SafeTensors<'_>, base: &str) -> Vec<String> {
    if st.tensor(base).is_ok() {
        return vec![base.to_string()];
    }
    (0..)
        .map(|i| format!("{base}{i}"))
        .take_while(|n| st.tensor(n).is_ok())
        .collect()
}

/// Reads an int64 `[batch, seq]` tensor as a token batch.
pub fn read_tokens(path: &Path, st: &SafeTensors<'_>, name: &str) -> Result<Tokens, IoError> {
    let (shape, ids) = read_i64(path, st, name)?;
    let &[batch, seq] = shape.as_slice() else {
        let reason = format!("expected shape [batch, seq], got {shape:?}");
        return Err(tensor_error(path, name, reason));
    };
    Tokens::new(batch, seq, ids).map_err(|e| tensor_error(path, name, e.to_string()))
}

/// Reads an f32 tensor.
pub fn read_f32(path: &Path, st: &SafeTensors<'_>, name: &str) -> Result<Tensor, IoError> {
    let (shape, data) = read_typed(path, st, name, Dtype::F32, f32::from_le_bytes)?;
    Tensor::new(shape, data).map_err(|e| tensor_error(path, name, e.to_string()))
}

/// Reads an int64 tensor as `(shape, values)`.
pub fn read_i64(
    path: &Path,
    st: &SafeTensors<'_>,
    name: &str,
) -> Result<(Vec<usize>, Vec<i64>), IoError> {
    read_typed(path, st, name, Dtype::I64, i64::from_le_bytes)
}

/// Reads tensor `name`, which must have element type `dtype`, decoding each little-endian
/// element of N bytes with `decode`.
fn read_typed<T, const N: usize>(
    path: &Path,
    st: &SafeTensors<'_>,
    name: &str,
    dtype: Dtype,
    decode: fn([u8; N]) -> T,
) -> Result<(Vec<usize>, Vec<T>), IoError> {
    let view = st
        .tensor(name)
        .map_err(|e| tensor_error(path, name, e.to_string()))?;
    if view.dtype() != dtype {
        let reason = format!("expected {dtype:?}, got {:?}", view.dtype());
        return Err(tensor_error(path, name, reason));
    }
    let data = view
        .data()
        .chunks_exact(N)
        .map(|b| decode(b.try_into().unwrap_or([0; N])))
        .collect();
    Ok((view.shape().to_vec(), data))
}

fn tensor_error(path: &Path, name: &str, reason: String) -> IoError {
    IoError::Tensor {
        path: path.into(),
        tensor: name.into(),
        reason,
    }
}

/// Writes named f32 tensors to `path` atomically.
pub fn write_f32(path: &Path, tensors: &[(String, &Tensor)]) -> Result<(), IoError> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.data().iter().flat_map(|v| v.to_le_bytes()).collect(),
                t.shape().to_vec(),
            )
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(n, b, s)| TensorView::new(Dtype::F32, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| IoError::Format {
            path: path.into(),
            reason: e.to_string(),
        })?;
    let data = safetensors::serialize(views, None).map_err(|e| IoError::Format {
        path: path.into(),
        reason: e.to_string(),
    })?;
    write_atomic(path, &data)
}

/// Writes `data` to a temporary file beside `path`, then renames it over `path`.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), IoError> {
    write_atomic_with(path, |w| w.write_all(data))
}

/// Streams `fill`'s output into a temporary file beside `path`, syncs it, then renames it over
/// `path`; on any error (or a kill) nothing is left and `path` is untouched
/// ([`crate::atomic::write_with`]).
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> Result<(), IoError> {
    crate::atomic::write_with(path, fill).map_err(|source| IoError::Io {
        path: path.into(),
        source,
    })
}
