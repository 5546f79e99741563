//! `switchhead logits MODEL --tokens IN.safetensors -o OUT.safetensors [--executor E]`.
//!
//! Reads int64 `tokens` `[batch, seq]` (or chunks `tokens0`, `tokens1`, ... run in order: with
//! the XL memory carried for XL models, each on its own for RoPE models) and writes f32 `logits` (or `logits0`, `logits1`, ...)
//! `[batch, seq, vocab]`, atomically. MODEL is a checkpoint (compiled in memory for the runtime
//! executors) or, for the runtime executors (auto, cpu, cuda, opencl), an ONNX file or a
//! `.shplan` written by `switchhead-compile` (the device executors take plans). `auto` (the default) runs on CUDA only when the binary has the `cuda`
//! feature, a device is present and the backend can run the model; `cuda` fails with one line
//! saying why when it cannot.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use switchhead_compiler::config::PosEncodingKind;
use switchhead_compiler::reference::{Memory, ReferenceExecutor, Tokens};
use switchhead_compiler::tensor_io::{read_token_chunks, write_f32};
use switchhead_ops::Tensor;
use switchhead_runtime::{BackendKind, TokenBatch, XlMemory};

use crate::model_arg::ModelArg;
use crate::open::{DeviceDTypeArg, OpenOptions, is_compiled, open};

/// Which engine computes the logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Executor {
    /// The best available backend: CUDA when built, present and able to run the model, else
    /// the CPU.
    Auto,
    /// The runtime's CPU backend (tract with our ai.switchhead kernels).
    Cpu,
    /// The runtime's CUDA backend (needs the `cuda` feature and a device).
    Cuda,
    /// The runtime's OpenCL backend, on any OpenCL device (a GPU, or a CPU through PoCL).
    Opencl,
    /// The plain reference executor (slow, exact; the oracle).
    Reference,
}

/// Arguments of `switchhead logits`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArg,
    /// Token file: int64 `tokens` [batch, seq], or chunks `tokens0`, `tokens1`, ...
    #[arg(long, value_name = "IN.safetensors")]
    pub tokens: PathBuf,
    /// Output file for the f32 logits.
    #[arg(short, long, value_name = "OUT.safetensors")]
    pub output: PathBuf,
    /// The executor to run.
    #[arg(long, value_enum, default_value_t = Executor::Auto)]
    pub executor: Executor,
    /// Threads for the CPU backend (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Weight type on a device executor (cuda, opencl).
    #[arg(long, value_enum, default_value_t = DeviceDTypeArg::F32)]
    pub dtype: DeviceDTypeArg,
}

/// Runs `switchhead logits`.
pub fn run(args: Args) -> Result<()> {
    let chunks = read_token_chunks(&args.tokens)?;
    let outputs = match args.executor {
        Executor::Reference => run_reference(&args, &chunks)?,
        Executor::Auto => run_session(&args, &chunks, BackendKind::Auto)?,
        Executor::Cpu => run_session(&args, &chunks, BackendKind::Cpu)?,
        Executor::Cuda => run_session(&args, &chunks, BackendKind::Cuda)?,
        Executor::Opencl => run_session(&args, &chunks, BackendKind::OpenCl)?,
    };
    let names = output_names(outputs.len());
    let named: Vec<(String, &Tensor)> = names.into_iter().zip(&outputs).collect();
    write_f32(&args.output, &named)?;
    for (name, t) in &named {
        println!("{name}: f32 {:?}", t.shape());
    }
    println!("wrote {}", args.output.display());
    Ok(())
}

fn run_reference(args: &Args, chunks: &[Tokens]) -> Result<Vec<Tensor>> {
    if is_compiled(&args.model.model) {
        bail!(
            "{}: the reference executor runs checkpoints, not ONNX files (use --executor cpu)",
            args.model.model.display()
        );
    }
    let model = args.model.load()?;
    let exec = ReferenceExecutor::new(&model)?;
    let mut memory: Option<Memory> = None;
    let mut outputs = Vec::new();
    for (i, tokens) in chunks.iter().enumerate() {
        let out = exec
            .forward(tokens, memory.as_ref())
            .with_context(|| format!("{}: chunk {i}", args.tokens.display()))?;
        outputs.push(out.logits);
        // RoPE models run each chunk on its own, as the training code does.
        memory = (model.config.pos_encoding == PosEncodingKind::Xl).then_some(out.memory);
    }
    Ok(outputs)
}

fn run_session(args: &Args, chunks: &[Tokens], backend: BackendKind) -> Result<Vec<Tensor>> {
    let opts = OpenOptions {
        threads: args.threads,
        kv_cache: false,
        backend,
        dtype: args.dtype.into(),
        native: false,
    };
    let opened = open(&args.model, opts)?;
    let session = &opened.session;
    let mut memory: Option<XlMemory> = None;
    let mut outputs = Vec::new();
    for tokens in chunks {
        let ids = (0..tokens.batch())
            .flat_map(|b| tokens.sequence(b).to_vec())
            .collect();
        let batch = TokenBatch::new(tokens.batch(), tokens.seq(), ids)?;
        let logits = match session.is_xl() {
            true => {
                let (logits, next) = session.forward_chunk(&batch, memory.as_ref())?;
                memory = Some(next);
                logits
            }
            false => session.logits(&batch)?,
        };
        outputs.push(Tensor::new(
            vec![logits.batch, logits.seq, logits.vocab],
            logits.data,
        )?);
    }
    Ok(outputs)
}

fn output_names(chunks: usize) -> Vec<String> {
    if chunks == 1 {
        return vec!["logits".into()];
    }
    (0..chunks).map(|i| format!("logits{i}")).collect()
}
