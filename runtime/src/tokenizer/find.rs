//! Where a model's tokenizer lives. In a model directory: `tokenizer.json`, else
//! `tokenizer.model`, else its one SentencePiece `*.model`. Beside a model file (a checkpoint,
//! an ONNX file or a plan, which may sit in any folder, a temp folder among them): only the
//! names `tokenizer.json` and `tokenizer.model`, so that an unrelated `*.model` there is never
//! taken for the model's tokenizer.

use std::path::{Path, PathBuf};

use super::{Result, Tokenizer, TokenizerError};

/// The directory of a model: the path itself for a directory, else the file's parent.
pub(super) fn model_dir(model: &Path) -> PathBuf {
    if model.is_dir() {
        return model.to_path_buf();
    }
    match model.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The tokenizer of the model at `model`, if there is one (see the module docs).
pub(super) fn for_model(model: &Path) -> Result<Option<Tokenizer>> {
    let dir = model_dir(model);
    match model.is_dir() {
        true => in_dir(&dir),
        false => named(&dir),
    }
}

/// The tokenizer in the model directory `dir`, if there is one.
pub(super) fn in_dir(dir: &Path) -> Result<Option<Tokenizer>> {
    if let Some(t) = named(dir)? {
        return Ok(Some(t));
    }
    match sentencepiece_file(dir)? {
        Some(path) => Tokenizer::from_file(&path).map(Some),
        None => Ok(None),
    }
}

/// `tokenizer.json`, else `tokenizer.model`, in `dir`.
fn named(dir: &Path) -> Result<Option<Tokenizer>> {
    let found = ["tokenizer.json", "tokenizer.model"]
        .into_iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file());
    found.map(|p| Tokenizer::from_file(&p)).transpose()
}

fn sentencepiece_file(dir: &Path) -> Result<Option<PathBuf>> {
    let io = |source| TokenizerError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "model") {
            found.push(path);
        }
    }
    found.sort();
    match found.len() {
        0 | 1 => Ok(found.pop()),
        _ => Err(ambiguous(dir, &found)),
    }
}

fn ambiguous(dir: &Path, found: &[PathBuf]) -> TokenizerError {
    let names: Vec<String> = found
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    TokenizerError::Ambiguous {
        dir: dir.to_path_buf(),
        names: names.join(", "),
    }
}
