//! `switchhead run MODEL --prompt TEXT --max-tokens N`: generation, streamed to stdout as the
//! text comes, through the runtime's stateful decoder (one token's work per step). The prompt
//! is encoded and the tokens decoded with the model's tokenizer (`--tokenizer`, else the one in
//! the model's directory, else bytes for a vocabulary of 256). Greedy by default;
//! `--temperature` with `--top-p` and `--seed` to sample. Timings go to stderr.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use switchhead_runtime::Tokenizer;

use crate::model_arg::ModelArg;
use crate::open::{BackendArgs, OpenOptions, open};
use crate::sample::Sampler;

/// Arguments of `switchhead run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArg,
    /// The text to continue.
    #[arg(long)]
    pub prompt: String,
    /// Tokens to generate.
    #[arg(long, default_value_t = 200)]
    pub max_tokens: usize,
    /// A tokenizer.json (Hugging Face) or SentencePiece .model (default: the one in the model's
    /// directory; byte-level for a vocabulary of 256).
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<PathBuf>,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Nucleus sampling: keep the most likely tokens up to this probability mass.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Seed of the sampler (same seed, same text).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Context limit of RoPE models (default: the training context the model records).
    #[arg(long)]
    pub context: Option<usize>,
    /// Threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// No timing line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs `switchhead run`.
pub fn run(args: Args) -> Result<()> {
    if args.prompt.is_empty() {
        bail!("empty prompt: generation needs at least one token to continue from");
    }
    if args.top_p <= 0.0 || args.top_p > 1.0 || args.top_p.is_nan() || !args.temperature.is_finite()
    {
        bail!("--top-p must be in (0, 1] and --temperature a finite number >= 0");
    }
    let opts = OpenOptions {
        threads: args.threads,
        kv_cache: true,
        ..Default::default()
    }
    .with_backend(args.backend);
    let opened = open(&args.model, opts)?;
    let session = &opened.session;
    let mut decoder = session
        .decoder()
        .with_context(|| args.model.model.display().to_string())?;
    if args.context.is_some() {
        decoder = decoder.with_context(args.context);
    }
    let vocab = session.info().vocab_size;
    let tokenizer = Tokenizer::for_model(&args.model.model, args.tokenizer.as_deref(), vocab)?;
    let prompt = tokenizer.encode(&args.prompt)?;
    if prompt.is_empty() {
        bail!(
            "the prompt encodes to no tokens with the {}",
            tokenizer.describe()
        );
    }
    let mut sampler = Sampler::new(args.temperature, args.top_p, args.seed);
    let mut stream = tokenizer.stream();
    let mut out = std::io::stdout().lock();
    out.write_all(args.prompt.as_bytes())?;
    out.flush()?;
    let start = Instant::now();
    let mut logits = decoder.feed(&prompt)?;
    let prefill = start.elapsed();
    for _ in 0..args.max_tokens {
        let next = sampler
            .next(&logits)
            .and_then(|t| i64::try_from(t).ok())
            .context("the model returned no logits")?;
        out.write_all(&stream.step(next)?)?;
        out.flush()?;
        logits = decoder.feed(&[next])?;
    }
    writeln!(out)?;
    let decode = start.elapsed() - prefill;
    if !args.quiet {
        report(
            prompt.len(),
            prefill,
            args.max_tokens,
            decode,
            session.backend_name(),
        );
    }
    Ok(())
}

fn report(
    prompt: usize,
    prefill: std::time::Duration,
    generated: usize,
    decode: std::time::Duration,
    backend: &str,
) {
    let per_s = |n: usize, d: std::time::Duration| n as f64 / d.as_secs_f64().max(1e-9);
    eprintln!(
        "[{backend}] prompt {prompt} tokens in {:.1} ms ({:.0} tok/s); generated {generated} tokens in {:.1} ms ({:.1} tok/s)",
        prefill.as_secs_f64() * 1e3,
        per_s(prompt, prefill),
        decode.as_secs_f64() * 1e3,
        per_s(generated, decode),
    );
}
