//! Reading `.safetensors` checkpoints through a memory map.

use std::path::Path;
use std::sync::Arc;

use crate::error::ImportError;
use crate::model::{DType, TensorInfo, Weights};

/// Tensors of a safetensors file (under their file names) plus the `config` metadata entry.
pub(crate) struct Read {
    pub weights: Weights,
    pub metadata_config: Option<String>,
}

/// Maps `path` and indexes its tensors; element data stays in the map.
pub(crate) fn read(path: &Path) -> Result<Read, ImportError> {
    let io = |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len < 8 {
        return Err(corrupt(
            path,
            format!("file is {len} bytes, shorter than a safetensors header"),
        ));
    }
    // SAFETY: the map is read-only; a checkpoint modified while we read it is outside our
    // contract (as for every memory-mapped loader).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    let map = Arc::new(map);
    let (header_len, metadata) =
        safetensors::SafeTensors::read_metadata(&map).map_err(|e| corrupt(path, format!("{e}")))?;
    let data_start = 8 + header_len;
    let mut weights = Weights::for_file(path.to_path_buf());
    for (name, info) in metadata.tensors() {
        if super::layout::is_ignored(&name) {
            continue;
        }
        let dtype = dtype_of(path, &name, info.dtype)?;
        let info_out = TensorInfo {
            dtype,
            shape: info.shape.clone(),
        };
        let offset = data_start + info.data_offsets.0;
        weights.insert_mapped(name.clone(), name, info_out, Arc::clone(&map), offset);
    }
    let metadata_config = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get("config").cloned());
    Ok(Read {
        weights,
        metadata_config,
    })
}

fn dtype_of(path: &Path, name: &str, dtype: safetensors::Dtype) -> Result<DType, ImportError> {
    match dtype {
        safetensors::Dtype::F32 => Ok(DType::F32),
        safetensors::Dtype::F16 => Ok(DType::F16),
        safetensors::Dtype::BF16 => Ok(DType::BF16),
        other => Err(ImportError::UnsupportedDtype {
            path: path.to_path_buf(),
            tensor: name.to_string(),
            dtype: format!("{other:?}"),
        }),
    }
}

fn corrupt(path: &Path, reason: String) -> ImportError {
    ImportError::Corrupt {
        path: path.to_path_buf(),
        reason,
    }
}
