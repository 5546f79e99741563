//! Compiling an imported [`Model`] to a file: the one sequence `switchhead-compile`, the Python
//! package and the runtime's in-memory checkpoint sessions share.
//!
//! [`compile_to_file`] lowers, runs the pass pipeline and emits ONNX or a native plan, written
//! atomically (nothing is left behind on failure; the output is byte-identical across runs and
//! across weight sources, a file or in-memory tensors). [`compile_to_temp`] writes what a
//! runtime session loads from a checkpoint into the temp folder and removes it when dropped.

use std::path::{Path, PathBuf};

use crate::Model;
use crate::config::PosEncodingKind;
use crate::error::ImportError;
use crate::ir::{lower, materialize};
use crate::onnx::{EmitError, EmitOptions, ExpertForm, OnnxQuant, WeightDType, emit, write};
use crate::passes::manager::Printer;
use crate::passes::{PassManager, PipelineError, RunOptions, pipeline};
use crate::plan::{PlanEmitError, PlanOptions, PlanQuant, plan_graph, write_plan_file};

/// What [`compile_to_file`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// ONNX (custom `ai.switchhead` domain unless decomposed).
    Onnx,
    /// A native plan (`.shplan`).
    Plan,
}

impl OutputFormat {
    /// The format an output path names: `Plan` for `.shplan`, else `Onnx`.
    pub fn for_path(path: &Path) -> Self {
        match path.extension().is_some_and(|e| e == "shplan") {
            true => OutputFormat::Plan,
            false => OutputFormat::Onnx,
        }
    }
}

/// How [`compile_to_file`] compiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileOptions {
    /// The output format.
    pub format: OutputFormat,
    /// Standard ONNX ops only (ONNX output only).
    pub decompose: bool,
    /// How routed experts are decomposed (the decomposed graph and the function bodies).
    pub experts: ExpertForm,
    /// KV-cache inputs and outputs (ONNX output of RoPE models only).
    pub kv_cache: bool,
    /// Storage type of the weights (compute stays f32).
    pub dtype: WeightDType,
    /// Weight-only int8/int4 quantization of the projection and expert weights (`dtype` must
    /// be f32; plans: `crate::plan::PlanQuant`, ONNX: `crate::onnx::OnnxQuant`).
    pub quantize: Option<PlanQuant>,
    /// 0: shape inference only, keeping the checkpoint's weight order; 1: the whole pipeline.
    pub opt_level: u8,
    /// Print the graph's text form after this pass (to [`RunOptions::printer`]).
    pub print_after: Option<String>,
    /// Run the pipeline up to and including this pass.
    pub stop_after: Option<String>,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            format: OutputFormat::Onnx,
            decompose: false,
            experts: ExpertForm::Dense,
            kv_cache: false,
            dtype: WeightDType::F32,
            quantize: None,
            opt_level: 1,
            print_after: None,
            stop_after: None,
        }
    }
}

/// A stage of [`compile_to_file`], reported as it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Building the IR graph.
    Lowering,
    /// Running the pass pipeline.
    Passes,
    /// Building the ONNX model.
    Emitting,
    /// Writing the output file.
    Writing,
}

/// Why a model could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// `decompose` or `kv_cache` was asked of a plan.
    #[error("--decompose and --kv-cache apply to ONNX output only")]
    OnnxOnly,
    /// The pass pipeline failed (or named an unknown pass).
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// ONNX emission or writing failed (a KV cache of an XL model included).
    #[error(transparent)]
    Emit(#[from] EmitError),
    /// `quantize` was asked with 16-bit storage of the other weights.
    #[error("--quantize keeps the other weights f32; it cannot be combined with --dtype {0:?}")]
    QuantizeDtype(WeightDType),
    /// Plan emission or writing failed.
    #[error(transparent)]
    Plan(#[from] PlanEmitError),
    /// A weight the passes derive could not be computed.
    #[error(transparent)]
    Weights(#[from] ImportError),
}

/// Compiles `model` to `output` (see the module docs); `printer` receives the text form for
/// `print_after` (stderr without one), `stage` hears each stage as it starts.
pub fn compile_to_file<'a>(
    model: &Model,
    output: &Path,
    opts: &CompileOptions,
    printer: Option<&'a mut Printer<'a>>,
    stage: &mut dyn FnMut(Stage),
) -> Result<(), CompileError> {
    check(model, opts)?;
    stage(Stage::Lowering);
    let mut graph = lower(model);
    stage(Stage::Passes);
    let run = RunOptions {
        print_after: opts.print_after.clone(),
        stop_after: opts.stop_after.clone(),
        printer,
    };
    PassManager::new(pipeline(opts.opt_level)).run(&mut graph, run)?;
    if opts.format == OutputFormat::Plan {
        stage(Stage::Writing);
        let plan = PlanOptions {
            dtype: opts.dtype,
            chunk_size: model.config.chunk_size,
            // Layout choice is an optimization: -O0 keeps the checkpoint's order.
            panels: opts.opt_level > 0,
            quantize: opts.quantize,
        };
        return write_plan(&graph, model, &plan, output);
    }
    stage(Stage::Emitting);
    let emit_opts = EmitOptions {
        decompose: opts.decompose,
        dtype: opts.dtype,
        kv_cache: opts.kv_cache,
        chunk_size: model.config.chunk_size,
        experts: opts.experts,
        quant: opts.quantize.map(|q| OnnxQuant {
            bits: q.bits,
            group: q.group,
        }),
    };
    let proto = emit(&graph, &model.weights, &emit_opts)?;
    stage(Stage::Writing);
    Ok(write(proto, output)?)
}

/// The option combinations no output supports, refused before any work.
fn check(model: &Model, opts: &CompileOptions) -> Result<(), CompileError> {
    if opts.kv_cache && model.config.pos_encoding == PosEncodingKind::Xl {
        return Err(EmitError::KvCacheXl.into());
    }
    if opts.format == OutputFormat::Plan && (opts.decompose || opts.kv_cache) {
        return Err(CompileError::OnnxOnly);
    }
    if opts.quantize.is_some() && opts.dtype != WeightDType::F32 {
        return Err(CompileError::QuantizeDtype(opts.dtype));
    }
    Ok(())
}

/// The graph's derived weights (folded LayerNorms), computed once, and the plan written.
fn write_plan(
    graph: &crate::ir::Graph,
    model: &Model,
    opts: &PlanOptions,
    output: &Path,
) -> Result<(), CompileError> {
    let weights = materialize(graph, &model.weights)?;
    write_plan_file(&plan_graph(graph, &weights, opts)?, &weights, output)?;
    Ok(())
}

/// What a runtime session runs a checkpoint as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionTarget {
    /// Unoptimized ONNX for the CPU backend; `kv_cache` adds the KV-cache interface to RoPE
    /// models (XL models carry memory instead, so it is ignored for them).
    Onnx { kv_cache: bool },
    /// An optimized plan: `panels` lays projection weights out for the CPU's native executor,
    /// else they stay row-major, as the device executors read them; `quantize` stores the
    /// projection and expert weights as int8/int4 (row-major).
    Plan {
        panels: bool,
        quantize: Option<PlanQuant>,
    },
}

/// A compiled file in the temp folder, removed when dropped.
#[derive(Debug)]
pub struct TempFile(PathBuf);

impl TempFile {
    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `model` compiled for a runtime session into a temporary file (see [`SessionTarget`]).
pub fn compile_to_temp(model: &Model, target: SessionTarget) -> Result<TempFile, CompileError> {
    match target {
        SessionTarget::Onnx { kv_cache } => {
            let opts = EmitOptions {
                kv_cache: kv_cache && model.config.pos_encoding == PosEncodingKind::Rope,
                chunk_size: model.config.chunk_size,
                ..Default::default()
            };
            let proto = emit(&lower(model), &model.weights, &opts)?;
            let file = TempFile(temp_path("onnx"));
            write(proto, file.path())?;
            Ok(file)
        }
        SessionTarget::Plan { panels, quantize } => {
            let mut graph = lower(model);
            PassManager::default().run(&mut graph, RunOptions::default())?;
            let opts = PlanOptions {
                dtype: WeightDType::F32,
                chunk_size: model.config.chunk_size,
                panels,
                quantize,
            };
            let file = TempFile(temp_path("shplan"));
            write_plan(&graph, model, &opts, file.path())?;
            Ok(file)
        }
    }
}

/// A fresh name in the temp folder: process id plus a per-process counter and the time.
fn temp_path(ext: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!(
        "switchhead-{}-{nanos}-{n}.{ext}",
        std::process::id()
    ))
}
