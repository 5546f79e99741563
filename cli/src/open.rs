//! Opening a runtime session on what the user named: a compiled model file, or a checkpoint
//! compiled in memory to a temporary ONNX file (removed when the session is dropped).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use switchhead_compiler::config::PosEncodingKind;
use switchhead_compiler::ir::lower;
use switchhead_compiler::onnx::{EmitOptions, emit, write};
use switchhead_runtime::backend::{CudaBackend, probe};
use switchhead_runtime::{BackendKind, Session, SessionOptions};

use crate::model_arg::ModelArg;

/// `--executor` of `run` and `eval`: which runtime backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ExecutorArg {
    /// CUDA when built, present and able to run the model, else the CPU.
    #[default]
    Auto,
    /// The CPU backend (tract with our kernels).
    Cpu,
    /// The CUDA backend (needs the `cuda` feature and a device).
    Cuda,
}

impl From<ExecutorArg> for BackendKind {
    fn from(e: ExecutorArg) -> Self {
        match e {
            ExecutorArg::Auto => BackendKind::Auto,
            ExecutorArg::Cpu => BackendKind::Cpu,
            ExecutorArg::Cuda => BackendKind::Cuda,
        }
    }
}

/// A session and, for checkpoints, the temporary file it runs.
pub struct Opened {
    pub session: Session,
    _temp: Option<TempFile>,
}

/// What a session opened from a checkpoint needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenOptions {
    /// Worker threads (default: all cores).
    pub threads: Option<usize>,
    /// Compile RoPE checkpoints with KV-cache inputs (for token-by-token decoding).
    pub kv_cache: bool,
    /// The backend (default: the best available).
    pub backend: BackendKind,
}

/// Loads `model` into a session (see the module docs).
pub fn open(model: &ModelArg, opts: OpenOptions) -> Result<Opened> {
    if opts.backend == BackendKind::Cuda {
        // Before compiling a checkpoint: a host without a device fails at once, in one line.
        if let Err(why) = probe() {
            return Err(CudaBackend::unavailable_because(why).into());
        }
    }
    let temp = match is_compiled(&model.model) {
        true => None,
        false => Some(compile_to_temp(model, opts.kv_cache)?),
    };
    let path = temp
        .as_ref()
        .map_or(model.model.as_path(), |t| t.0.as_path());
    let options = SessionOptions {
        threads: opts.threads,
        backend: opts.backend,
    };
    let session =
        Session::load(path, options).with_context(|| model.model.display().to_string())?;
    Ok(Opened {
        session,
        _temp: temp,
    })
}

/// True for files the runtime loads directly (ONNX or `.shplan` from `switchhead-compile`).
pub fn is_compiled(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e == "onnx" || e == "shplan")
}

/// A file in the temp folder, removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn compile_to_temp(model: &ModelArg, kv_cache: bool) -> Result<TempFile> {
    let loaded = model.load()?;
    let opts = EmitOptions {
        kv_cache: kv_cache && loaded.config.pos_encoding == PosEncodingKind::Rope,
        chunk_size: loaded.config.chunk_size,
        ..Default::default()
    };
    let proto = emit(&lower(&loaded), &loaded.weights, &opts)?;
    let path = std::env::temp_dir().join(format!(
        "switchhead-{}-{}.onnx",
        std::process::id(),
        unique()
    ));
    write(proto, &path)?;
    Ok(TempFile(path))
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
