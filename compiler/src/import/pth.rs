//! Reading PyTorch `.pth` checkpoints (`torch.save` zip files) with candle's pickle reader.
//!
//! The training code saves `{"model": state_dict, ...}`; a bare state_dict is accepted too.
//! Tensors are loaded into memory and widened to f32; their stored dtype is kept in the info.
//! The pickle is checked first ([`super::pth_pickle`], [`super::pth_records`]): candle's
//! reader trusts its lengths and the shape of its tensor records.

use std::path::Path;

use candle_core::pickle::PthTensors;

use crate::error::ImportError;
use crate::model::{DType, TensorInfo, Weights};

/// Loads every tensor of `path` (under its state_dict name).
pub(crate) fn read(path: &Path) -> Result<Weights, ImportError> {
    std::fs::File::open(path).map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    check_before_candle(path)?;
    let pth = open(path)?;
    let mut names: Vec<&String> = pth
        .tensor_infos()
        .keys()
        .filter(|n| !super::layout::is_ignored(n))
        .collect();
    names.sort();
    let file_len = std::fs::metadata(path).map_or(0, |m| m.len());
    let mut weights = Weights::for_file(path.to_path_buf());
    for name in names {
        check_claimed_size(path, &pth, name, file_len)?;
        let (info, data) = load_one(path, &pth, name)?;
        weights.insert_owned(name.clone(), name.clone(), info, data);
    }
    Ok(weights)
}

/// Refuses a pickle that would make candle allocate beyond the file or panic.
fn check_before_candle(path: &Path) -> Result<(), ImportError> {
    for (entry, pickle) in super::pth_pickle::bounded_pickles(path)? {
        super::pth_records::check(&pickle).map_err(|e| corrupt(path, format!("{entry}: {e}")))?;
    }
    Ok(())
}

/// The state_dict under key "model", else the top-level object as a state_dict.
fn open(path: &Path) -> Result<PthTensors, ImportError> {
    let with_key = PthTensors::new(path, Some("model"));
    let with_key_err = match with_key {
        Ok(p) if !p.tensor_infos().is_empty() => return Ok(p),
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    };
    match PthTensors::new(path, None) {
        Ok(p) if !p.tensor_infos().is_empty() => Ok(p),
        Ok(_) => Err(corrupt(
            path,
            "no tensors found (neither under \"model\" nor top-level)".into(),
        )),
        Err(e) => Err(corrupt(path, with_key_err.unwrap_or_else(|| e.to_string()))),
    }
}

/// Refuses a tensor whose claimed shape needs more bytes than the whole file holds, before
/// candle allocates a buffer of that size (`torch.save` stores tensors uncompressed).
fn check_claimed_size(
    path: &Path,
    pth: &PthTensors,
    name: &str,
    file_len: u64,
) -> Result<(), ImportError> {
    let Some(info) = pth.tensor_infos().get(name) else {
        return Ok(());
    };
    let dims = info.layout.dims();
    let bytes = dims
        .iter()
        .try_fold(info.dtype.size_in_bytes() as u64, |n, &d| {
            n.checked_mul(d as u64)
        })
        .and_then(|n| n.checked_add(info.layout.start_offset() as u64));
    match bytes {
        Some(n) if n <= file_len => Ok(()),
        _ => Err(corrupt(
            path,
            format!(
                "{name}: shape {dims:?} ({:?}) needs more bytes than the file's {file_len}",
                info.dtype
            ),
        )),
    }
}

fn load_one(
    path: &Path,
    pth: &PthTensors,
    name: &str,
) -> Result<(TensorInfo, Vec<f32>), ImportError> {
    let t = pth
        .get(name)
        .map_err(|e| corrupt(path, format!("{name}: {e}")))?
        .ok_or_else(|| corrupt(path, format!("{name}: listed but not readable")))?;
    let dtype = match t.dtype() {
        candle_core::DType::F32 => DType::F32,
        candle_core::DType::F16 => DType::F16,
        candle_core::DType::BF16 => DType::BF16,
        other => {
            return Err(ImportError::UnsupportedDtype {
                path: path.to_path_buf(),
                tensor: name.to_string(),
                dtype: format!("{other:?}").to_lowercase(),
            });
        }
    };
    let shape = t.dims().to_vec();
    let data = t
        .to_dtype(candle_core::DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|e| corrupt(path, format!("{name}: {e}")))?;
    Ok((TensorInfo { dtype, shape }, data))
}

fn corrupt(path: &Path, reason: String) -> ImportError {
    ImportError::Corrupt {
        path: path.to_path_buf(),
        reason,
    }
}
