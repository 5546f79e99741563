//! Opening a runtime session on what the user named: a compiled model file, or a checkpoint
//! compiled in memory to a temporary file (removed when the session is dropped): ONNX for
//! the CPU backend (a native plan with [`OpenOptions::native`]), a native plan for the device
//! executors (CUDA, OpenCL), by the compiler's [`compile::compile_to_temp`].

use std::path::Path;

use anyhow::{Context, Result};
use switchhead_compiler::compile::{self, SessionTarget, TempFile};
use switchhead_runtime::backend::{cuda, probe};
use switchhead_runtime::{BackendKind, DeviceDType, Session, SessionOptions};

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
    /// The OpenCL backend on any OpenCL device (a GPU, or a CPU through PoCL).
    Opencl,
}

impl From<ExecutorArg> for BackendKind {
    fn from(e: ExecutorArg) -> Self {
        match e {
            ExecutorArg::Auto => BackendKind::Auto,
            ExecutorArg::Cpu => BackendKind::Cpu,
            ExecutorArg::Cuda => BackendKind::Cuda,
            ExecutorArg::Opencl => BackendKind::OpenCl,
        }
    }
}

/// `--dtype` of the device executors: the weights' type on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DeviceDTypeArg {
    /// f32 weights.
    #[default]
    F32,
    /// bf16 matrices, f32 accumulation.
    Bf16,
}

impl From<DeviceDTypeArg> for DeviceDType {
    fn from(d: DeviceDTypeArg) -> Self {
        match d {
            DeviceDTypeArg::F32 => DeviceDType::F32,
            DeviceDTypeArg::Bf16 => DeviceDType::Bf16,
        }
    }
}

/// The backend flags `run`, `eval` and `bench` share.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct BackendArgs {
    /// The runtime backend.
    #[arg(long, value_enum, default_value_t = ExecutorArg::Auto)]
    pub executor: ExecutorArg,
    /// Weight type on a device executor (cuda, opencl).
    #[arg(long, value_enum, default_value_t = DeviceDTypeArg::F32)]
    pub dtype: DeviceDTypeArg,
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
    /// Weight type on a device backend.
    pub dtype: DeviceDType,
    /// Compile a checkpoint to a native plan for the CPU too (its executor runs independent
    /// sequences' decode steps as one pass, [`switchhead_runtime::Decoder::step_each`]).
    pub native: bool,
}

impl OpenOptions {
    /// Options for `backend` (threads and the KV cache as given).
    pub fn with_backend(self, b: BackendArgs) -> Self {
        OpenOptions {
            backend: b.executor.into(),
            dtype: b.dtype.into(),
            ..self
        }
    }
}

/// Loads `model` into a session (see the module docs).
pub fn open(model: &ModelArg, opts: OpenOptions) -> Result<Opened> {
    if opts.backend == BackendKind::Cuda {
        // Before compiling a checkpoint: a host without a device fails at once, in one line.
        if let Err(why) = probe() {
            return Err(cuda::unavailable(why).into());
        }
    }
    if opts.dtype != DeviceDType::F32 && !opts.backend.is_device() {
        anyhow::bail!("--dtype bf16 is for the device executors (--executor cuda or opencl)");
    }
    let device = opts.backend.is_device() || (opts.backend == BackendKind::Auto && probe().is_ok());
    let temp = match (is_compiled(&model.model), device, opts.native) {
        (true, _, _) => None,
        // row-major weights: the device executors read them so
        (false, true, _) => Some(compile_plan_to_temp(model, false)?),
        (false, false, true) => Some(compile_plan_to_temp(model, true)?),
        (false, false, false) => Some(compile_to_temp(model, opts.kv_cache)?),
    };
    let path = temp.as_ref().map_or(model.model.as_path(), TempFile::path);
    let options = SessionOptions {
        threads: opts.threads,
        backend: opts.backend,
        dtype: opts.dtype,
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

fn compile_to_temp(model: &ModelArg, kv_cache: bool) -> Result<TempFile> {
    let target = SessionTarget::Onnx { kv_cache };
    Ok(compile::compile_to_temp(&model.load()?, target)?)
}

/// The checkpoint optimized and written as a native plan (`panels`: the CPU executor's
/// weight layout).
fn compile_plan_to_temp(model: &ModelArg, panels: bool) -> Result<TempFile> {
    let target = SessionTarget::Plan {
        panels,
        quantize: None,
    };
    Ok(compile::compile_to_temp(&model.load()?, target)?)
}
