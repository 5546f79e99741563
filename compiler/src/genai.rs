//! An ONNX Runtime GenAI folder: `switchhead-compile MODEL --genai -o DIR` writes
//! `DIR/model.onnx`, `DIR/genai_config.json` and the tokenizer files ([`tokenizer`]), so that
//! `onnxruntime-genai` generates from `og.Model(DIR)` unmodified.
//!
//! The model is the standard-op form (`--decompose`: stock ONNX Runtime, which ORT GenAI uses,
//! cannot load our `ai.switchhead` ops) with the KV-cache interface, whose names ORT GenAI's
//! config maps: input `tokens` as `input_ids`, `past_key_values.%d.key/value` and
//! `present.%d.key/value`, output `logits`. There is no `attention_mask` or `position_ids`
//! input (positions follow the cache length), so one generator decodes one sequence, or
//! several with prompts of equal length. The config's type is ORT GenAI's generic `decoder`,
//! greedy search by default, `past_present_share_buffer` off (the cache grows by
//! concatenation), `context_length` the training context.
//!
//! Only RoPE models: a Transformer-XL model carries its state as the previous chunk's layer
//! inputs (`memory.{i}`), which ORT GenAI, whose state is a KV cache, cannot express
//! ([`GenaiError::Xl`]).
//!
//! Written atomically like the compiler's other outputs: everything goes into a temporary
//! folder beside `DIR`, which is renamed to `DIR` at the end; on any error nothing of it is
//! left. An existing `DIR` is replaced only if it holds nothing but the files an export writes.

mod spm_proto;
pub mod tokenizer;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

pub use tokenizer::{TokenizerFiles, TokenizerSource};

use crate::Model;
use crate::compile::{CompileError, CompileOptions, OutputFormat, Stage, compile_to_file};
use crate::config::PosEncodingKind;
use crate::passes::manager::Printer;

/// The ONNX file's name in the folder.
pub const MODEL_FILE: &str = "model.onnx";
/// The config's name in the folder.
pub const CONFIG_FILE: &str = "genai_config.json";
/// Every file an export may write (external data included); an existing folder holding
/// anything else is not replaced.
pub const EXPORT_FILES: [&str; 5] = [
    MODEL_FILE,
    "model.onnx.data",
    CONFIG_FILE,
    "tokenizer.json",
    "tokenizer_config.json",
];

/// Why a GenAI folder could not be written.
#[derive(Debug, thiserror::Error)]
pub enum GenaiError {
    /// A Transformer-XL model.
    #[error(
        "--genai needs a RoPE model: this Transformer-XL model carries its state as the previous \
         chunk's layer inputs (memory.{{i}}), and ORT GenAI's only state is a KV cache"
    )]
    Xl,
    /// A plan was asked for.
    #[error("--genai writes ONNX (a folder for ONNX Runtime GenAI), not a plan")]
    NotOnnx,
    /// The config records no training context.
    #[error(
        "the config has no chunk_size (training context), which genai_config.json needs as \
         context_length: pass --set chunk_size=N"
    )]
    NoContext,
    /// The output exists and is not a previous export.
    #[error(
        "{dir} exists and holds {file}, which --genai does not write: remove it or pick another \
         folder"
    )]
    NotAnExport { dir: PathBuf, file: String },
    /// The tokenizer cannot be exported.
    #[error("tokenizer {path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Compiling the model failed.
    #[error(transparent)]
    Compile(#[from] CompileError),
}

/// What an export wrote besides the files: where ORT GenAI will differ from our runtime.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Export {
    /// One sentence each (the tokenizer's differences; see [`TokenizerFiles::notes`]).
    pub notes: Vec<String>,
}

/// Writes the ONNX Runtime GenAI folder `dir` for `model` with its tokenizer from `source`
/// (see the module docs). `opts` chooses the expert form, weight type and passes; the format
/// is ONNX, decomposed, with the KV cache, whatever `opts` says of those.
pub fn write_genai_dir<'a>(
    model: &Model,
    dir: &Path,
    source: &TokenizerSource,
    opts: &CompileOptions,
    printer: Option<&'a mut Printer<'a>>,
    stage: &mut dyn FnMut(Stage),
) -> Result<Export, GenaiError> {
    let context = check(model, opts)?;
    let tokenizer = tokenizer::tokenizer_files(source, context)?;
    check_replaceable(dir)?;
    let tmp = sibling(dir, "tmp")?;
    let opts = CompileOptions {
        format: OutputFormat::Onnx,
        decompose: true,
        kv_cache: true,
        ..opts.clone()
    };
    let result = fill(&tmp, model, &tokenizer, context, &opts, printer, stage)
        .and_then(|()| replace(dir, &tmp));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result.map(|()| Export {
        notes: tokenizer.notes,
    })
}

/// The model's context length, once the options and model are known to export.
fn check(model: &Model, opts: &CompileOptions) -> Result<usize, GenaiError> {
    if model.config.pos_encoding == PosEncodingKind::Xl {
        return Err(GenaiError::Xl);
    }
    if opts.format == OutputFormat::Plan {
        return Err(GenaiError::NotOnnx);
    }
    model.config.chunk_size.ok_or(GenaiError::NoContext)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GenaiError + '_ {
    move |source| GenaiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A fresh folder `.{name}.genai-{tag}{pid}` beside `dir` (a stale one of this process is
/// removed first).
fn sibling(dir: &Path, tag: &str) -> Result<PathBuf, GenaiError> {
    let name = dir.file_name().ok_or_else(|| GenaiError::Io {
        path: dir.to_path_buf(),
        source: std::io::Error::other("not a folder name"),
    })?;
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let path = parent.join(format!(
        ".{}.genai-{tag}{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    if path.exists() {
        std::fs::remove_dir_all(&path).map_err(io(&path))?;
    }
    if tag == "tmp" {
        std::fs::create_dir(&path).map_err(io(&path))?;
    }
    Ok(path)
}

/// Fails unless `dir` is absent, or a folder holding only files an export writes.
fn check_replaceable(dir: &Path) -> Result<(), GenaiError> {
    if !dir.exists() {
        return Ok(());
    }
    let not_export = |file: String| GenaiError::NotAnExport {
        dir: dir.to_path_buf(),
        file,
    };
    if !dir.is_dir() {
        return Err(not_export("a file in its place".into()));
    }
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !EXPORT_FILES.contains(&name.as_str()) || !entry.path().is_file() {
            return Err(not_export(name));
        }
    }
    Ok(())
}

/// Writes the model, the config and the tokenizer files into `tmp`.
fn fill<'a>(
    tmp: &Path,
    model: &Model,
    tokenizer: &TokenizerFiles,
    context: usize,
    opts: &CompileOptions,
    printer: Option<&'a mut Printer<'a>>,
    stage: &mut dyn FnMut(Stage),
) -> Result<(), GenaiError> {
    compile_to_file(model, &tmp.join(MODEL_FILE), opts, printer, stage)?;
    let config = genai_config(model, tokenizer, context);
    let mut text = serde_json::to_string_pretty(&config).unwrap_or_default();
    text.push('\n');
    let files =
        std::iter::once((CONFIG_FILE, text.into_bytes())).chain(tokenizer.files.iter().cloned());
    for (name, bytes) in files {
        let path = tmp.join(name);
        std::fs::write(&path, bytes).map_err(io(&path))?;
    }
    Ok(())
}

/// `genai_config.json`: the decoder's shapes and value names, the special ids, greedy search.
pub fn genai_config(model: &Model, tokenizer: &TokenizerFiles, context: usize) -> Value {
    let c = &model.config;
    let mut m = json!({
        "type": "decoder",
        "vocab_size": c.vocab_size,
        "context_length": context,
        "eos_token_id": tokenizer.eos,
        "decoder": {
            "filename": MODEL_FILE,
            "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
            "hidden_size": c.d_model,
            "head_size": c.d_head,
            "num_attention_heads": c.n_heads,
            "num_key_value_heads": c.n_heads,
            "num_hidden_layers": c.n_layers,
            "inputs": {"input_ids": "tokens",
                       "past_key_names": "past_key_values.%d.key",
                       "past_value_names": "past_key_values.%d.value"},
            "outputs": {"logits": "logits",
                        "present_key_names": "present.%d.key",
                        "present_value_names": "present.%d.value"},
        },
    });
    for (key, id) in [
        ("bos_token_id", tokenizer.bos),
        ("pad_token_id", tokenizer.pad),
    ] {
        if let Some(id) = id {
            m[key] = json!(id);
        }
    }
    json!({
        "model": m,
        "search": {"do_sample": false, "num_beams": 1, "num_return_sequences": 1,
                   "max_length": context, "min_length": 0,
                   "past_present_share_buffer": false, "temperature": 1.0, "top_k": 50,
                   "top_p": 1.0, "repetition_penalty": 1.0, "length_penalty": 1.0,
                   "no_repeat_ngram_size": 0, "diversity_penalty": 0.0,
                   "early_stopping": true},
    })
}

/// Renames `tmp` to `dir`; an existing `dir` (checked replaceable) is moved aside first and
/// removed after, or moved back if the rename fails.
fn replace(dir: &Path, tmp: &Path) -> Result<(), GenaiError> {
    if !dir.exists() {
        return std::fs::rename(tmp, dir).map_err(io(dir));
    }
    check_replaceable(dir)?;
    let old = sibling(dir, "old")?;
    std::fs::rename(dir, &old).map_err(io(dir))?;
    if let Err(e) = std::fs::rename(tmp, dir) {
        let _ = std::fs::rename(&old, dir);
        return Err(io(dir)(e));
    }
    std::fs::remove_dir_all(&old).map_err(io(&old))
}
