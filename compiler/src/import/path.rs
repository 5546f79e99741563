//! Resolving the MODEL argument to one checkpoint file.

use std::path::{Path, PathBuf};

use crate::error::ImportError;

/// The checkpoint formats we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `.safetensors`, memory-mapped.
    Safetensors,
    /// `.pth` zip written by `torch.save`.
    Pth,
}

/// The format named by `path`'s extension, if it is one we read.
fn format_of(path: &Path) -> Option<Format> {
    match path.extension()?.to_str()? {
        "safetensors" => Some(Format::Safetensors),
        "pth" => Some(Format::Pth),
        _ => None,
    }
}

/// `path` itself if it is a checkpoint file, else the one checkpoint inside directory `path`.
pub(crate) fn resolve(path: &Path) -> Result<(PathBuf, Format), ImportError> {
    let meta = std::fs::metadata(path).map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_dir() {
        return resolve_dir(path);
    }
    match format_of(path) {
        Some(f) => Ok((path.to_path_buf(), f)),
        None => Err(ImportError::BadPath {
            path: path.to_path_buf(),
            reason: "not a checkpoint: expected a .safetensors or .pth file, or a directory \
                     holding one"
                .into(),
        }),
    }
}

fn resolve_dir(dir: &Path) -> Result<(PathBuf, Format), ImportError> {
    let io = |source| ImportError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let p = entry.map_err(io)?.path();
        if let Some(f) = format_of(&p).filter(|_| p.is_file()) {
            found.push((p, f));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    // Beside other tensor files (e.g. golden outputs), `model.*` is the checkpoint.
    let named_model: Vec<usize> = (0..found.len())
        .filter(|&i| found[i].0.file_stem().is_some_and(|s| s == "model"))
        .collect();
    if found.len() > 1 && named_model.len() == 1 {
        return Ok(found.swap_remove(named_model[0]));
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(ImportError::BadPath {
            path: dir.to_path_buf(),
            reason: "directory holds no .safetensors or .pth checkpoint".into(),
        }),
        _ => {
            let names: Vec<String> = found
                .iter()
                .filter_map(|(p, _)| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect();
            Err(ImportError::BadPath {
                path: dir.to_path_buf(),
                reason: format!(
                    "directory holds {} checkpoints ({}) and no single model.*; pass the file itself",
                    names.len(),
                    names.join(", ")
                ),
            })
        }
    }
}
