//! `switchhead logits MODEL --tokens IN.safetensors -o OUT.safetensors`.
//!
//! Reads int64 `tokens` `[batch, seq]` (or chunks `tokens0`, `tokens1`, ... run in order with
//! the XL memory carried) and writes f32 `logits` (or `logits0`, `logits1`, ...)
//! `[batch, seq, vocab]`, atomically.

use std::path::PathBuf;

use anyhow::{Context, Result};
use switchhead_compiler::reference::{Memory, ReferenceExecutor};
use switchhead_compiler::tensor_io::{read_token_chunks, write_f32};
use switchhead_ops::Tensor;

use crate::model_arg::ModelArg;

/// Which engine computes the logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Executor {
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
    #[arg(long, value_enum, default_value_t = Executor::Reference)]
    pub executor: Executor,
}

/// Runs `switchhead logits`.
pub fn run(args: Args) -> Result<()> {
    let chunks = read_token_chunks(&args.tokens)?;
    let model = args.model.load()?;
    let exec = ReferenceExecutor::new(&model)?;
    let mut memory: Option<Memory> = None;
    let mut outputs: Vec<Tensor> = Vec::new();
    for (i, tokens) in chunks.iter().enumerate() {
        let out = exec
            .forward(tokens, memory.as_ref())
            .with_context(|| format!("{}: chunk {i}", args.tokens.display()))?;
        outputs.push(out.logits);
        memory = Some(out.memory);
    }
    let names = output_names(outputs.len());
    let named: Vec<(String, &Tensor)> = names.into_iter().zip(&outputs).collect();
    write_f32(&args.output, &named)?;
    for (name, t) in &named {
        println!("{name}: f32 {:?}", t.shape());
    }
    println!("wrote {}", args.output.display());
    Ok(())
}

fn output_names(chunks: usize) -> Vec<String> {
    if chunks == 1 {
        return vec!["logits".into()];
    }
    (0..chunks).map(|i| format!("logits{i}")).collect()
}
