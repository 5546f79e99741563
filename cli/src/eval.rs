//! `switchhead eval MODEL --text FILE`: bits per byte (and per-byte perplexity) of a
//! byte-level model over a file, evaluated the way `testdata/scripts/train.py` evaluates:
//!
//! - RoPE / dense attention: non-overlapping windows of the training context; each window
//!   predicts its bytes 1..n-1 from bytes 0..n-2 of that window only; a final partial window
//!   counts if it has at least 2 bytes. Full windows run `--batch` at a time.
//! - Transformer-XL: one stream; inputs bytes 0..n-2, targets 1..n-1, cut into chunks of
//!   `chunk_size` inputs, each attending to the previous chunk through the XL memory.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use switchhead_runtime::{Logits, Session, TokenBatch, XlMemory};

use crate::model_arg::ModelArg;
use crate::open::{BackendArgs, OpenOptions, open};

/// Arguments of `switchhead eval`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArg,
    /// The text to score (its bytes are the tokens).
    #[arg(long, value_name = "FILE")]
    pub text: PathBuf,
    /// Window (RoPE) or chunk (XL) length; default: the one the model records.
    #[arg(long)]
    pub context: Option<usize>,
    /// Windows run side by side (RoPE models).
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// Summed cross-entropy over predicted bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Score {
    pub nats: f64,
    pub predicted: usize,
}

impl Score {
    /// Mean cross-entropy in bits.
    pub fn bits_per_byte(&self) -> f64 {
        self.nats / self.predicted.max(1) as f64 / std::f64::consts::LN_2
    }
}

/// Runs `switchhead eval`.
pub fn run(args: Args) -> Result<()> {
    let text = std::fs::read(&args.text)
        .with_context(|| format!("cannot read {}", args.text.display()))?;
    if text.len() < 2 {
        bail!(
            "{}: {} bytes; bits per byte needs at least 2",
            args.text.display(),
            text.len()
        );
    }
    let opts = OpenOptions {
        threads: args.threads,
        kv_cache: false,
        ..Default::default()
    }
    .with_backend(args.backend);
    let opened = open(&args.model, opts)?;
    let session = &opened.session;
    let context = args
        .context
        .or(session.info().chunk_size)
        .with_context(|| {
            format!(
                "{} records no training context (switchhead.chunk_size): pass --context",
                args.model.model.display()
            )
        })?;
    if context < 2 {
        bail!("--context must be at least 2, got {context}");
    }
    let tokens: Vec<i64> = text.iter().map(|&b| i64::from(b)).collect();
    let start = Instant::now();
    let score = match session.is_xl() {
        true => eval_xl(session, &tokens, context, &progress(tokens.len() - 1))?,
        false => eval_windows(session, &tokens, context, args.batch.max(1))?,
    };
    let secs = start.elapsed().as_secs_f64();
    let bpb = score.bits_per_byte();
    println!("bits_per_byte: {bpb:.6}");
    println!("perplexity: {:.6}", bpb.exp2());
    println!(
        "predicted: {} of {} bytes in {secs:.2} s ({:.0} bytes/s, {} backend)",
        score.predicted,
        text.len(),
        score.predicted as f64 / secs.max(1e-9),
        session.backend_name()
    );
    Ok(())
}

fn progress(total: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} bytes {elapsed} (eta {eta})")
    {
        bar.set_style(style);
    }
    bar
}

/// RoPE models: independent windows of `context` bytes.
pub fn eval_windows(
    session: &Session,
    tokens: &[i64],
    context: usize,
    batch: usize,
) -> Result<Score> {
    let windows: Vec<&[i64]> = tokens.chunks(context).filter(|w| w.len() >= 2).collect();
    let bar = progress(windows.iter().map(|w| w.len() - 1).sum());
    let mut score = Score::default();
    let (full, partial): (Vec<&[i64]>, Vec<&[i64]>) =
        windows.into_iter().partition(|w| w.len() == context);
    let groups = full.chunks(batch).chain(partial.chunks(1));
    for group in groups {
        let seq = group[0].len() - 1;
        let ids = group
            .iter()
            .flat_map(|w| w[..seq].iter().copied())
            .collect();
        let logits = session.logits(&TokenBatch::new(group.len(), seq, ids)?)?;
        for (b, w) in group.iter().enumerate() {
            add(&mut score, &logits, b, &w[1..]);
        }
        bar.inc((group.len() * seq) as u64);
    }
    bar.finish_and_clear();
    Ok(score)
}

/// XL models: one stream in chunks of `chunk` inputs with the memory carried.
pub fn eval_xl(
    session: &Session,
    tokens: &[i64],
    chunk: usize,
    bar: &ProgressBar,
) -> Result<Score> {
    let (inputs, targets) = (&tokens[..tokens.len() - 1], &tokens[1..]);
    let mut memory: Option<XlMemory> = None;
    let mut score = Score::default();
    for (x, y) in inputs.chunks(chunk).zip(targets.chunks(chunk)) {
        let (logits, next) =
            session.forward_chunk(&TokenBatch::single(x.to_vec()), memory.as_ref())?;
        add(&mut score, &logits, 0, y);
        memory = Some(next);
        bar.inc(x.len() as u64);
    }
    bar.finish_and_clear();
    Ok(score)
}

/// Adds `-log softmax(logits[b, t])[targets[t]]` for every t (f64 log-sum-exp).
fn add(score: &mut Score, logits: &Logits, b: usize, targets: &[i64]) {
    for (t, &target) in targets.iter().enumerate() {
        let Some(row) = logits.row(b, t) else {
            continue;
        };
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = max
            + row
                .iter()
                .map(|&v| (v as f64 - max).exp())
                .sum::<f64>()
                .ln();
        let Some(&logit) = usize::try_from(target).ok().and_then(|i| row.get(i)) else {
            continue;
        };
        score.nats += lse - logit as f64;
        score.predicted += 1;
    }
}
