//! `switchhead eval MODEL --text FILE`: bits per byte of the text (and per-token perplexity)
//! over a file, evaluated the way `testdata/scripts/train.py` evaluates. The file is encoded
//! as one text with the model's tokenizer (`--tokenizer`, else the one in the model's
//! directory, else bytes for a vocabulary of 256); windows and chunks count tokens:
//!
//! - RoPE / dense attention: non-overlapping windows of the training context; each window
//!   predicts its tokens 1..n-1 from tokens 0..n-2 of that window only; a final partial window
//!   counts if it has at least 2 tokens. Full windows run `--batch` at a time.
//! - Transformer-XL: one stream; inputs tokens 0..n-2, targets 1..n-1, cut into chunks of
//!   `chunk_size` inputs, each attending to the previous chunk through the XL memory.
//!
//! Bits per byte = the predicted tokens' summed cross-entropy / ln 2 / the UTF-8 bytes they
//! cover ([`switchhead_runtime::Encoding`]); for byte-level models the bytes are the tokens.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use switchhead_runtime::{Encoding, Logits, Session, TokenBatch, Tokenizer, XlMemory};

use crate::model_arg::ModelArg;
use crate::open::{BackendArgs, OpenOptions, open};

/// Arguments of `switchhead eval`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArg,
    /// The text to score.
    #[arg(long, value_name = "FILE")]
    pub text: PathBuf,
    /// A tokenizer.json (Hugging Face) or SentencePiece .model (default: the one in the model's
    /// directory; byte-level for a vocabulary of 256).
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<PathBuf>,
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

/// Summed cross-entropy over predicted tokens.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Score {
    pub nats: f64,
    /// Predicted tokens.
    pub predicted: usize,
    /// Text bytes the predicted tokens cover.
    pub bytes: usize,
}

impl Score {
    /// Cross-entropy in bits per byte of text.
    pub fn bits_per_byte(&self) -> f64 {
        self.nats / self.bytes.max(1) as f64 / std::f64::consts::LN_2
    }

    /// exp of the mean cross-entropy per predicted token.
    pub fn token_perplexity(&self) -> f64 {
        (self.nats / self.predicted.max(1) as f64).exp()
    }
}

/// Runs `switchhead eval`.
pub fn run(args: Args) -> Result<()> {
    let text = std::fs::read(&args.text)
        .with_context(|| format!("cannot read {}", args.text.display()))?;
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
    let vocab = session.info().vocab_size;
    let tokenizer = Tokenizer::for_model(&args.model.model, args.tokenizer.as_deref(), vocab)?;
    let encoding = tokenizer
        .encode_bytes(&text)
        .with_context(|| args.text.display().to_string())?;
    if encoding.ids.len() < 2 {
        bail!(
            "{}: {} tokens; bits per byte needs at least 2",
            args.text.display(),
            encoding.ids.len()
        );
    }
    let start = Instant::now();
    let score = match session.is_xl() {
        true => eval_xl(
            session,
            &encoding,
            context,
            &progress(encoding.ids.len() - 1),
        )?,
        false => eval_windows(session, &encoding, context, args.batch.max(1))?,
    };
    report(
        &score,
        start.elapsed().as_secs_f64(),
        text.len(),
        session,
        &tokenizer,
    );
    Ok(())
}

fn report(score: &Score, secs: f64, text_bytes: usize, session: &Session, tokenizer: &Tokenizer) {
    println!("bits_per_byte: {:.6}", score.bits_per_byte());
    println!("perplexity: {:.6}", score.token_perplexity());
    println!(
        "predicted: {} tokens covering {} of {text_bytes} bytes in {secs:.2} s ({:.0} tokens/s, {} backend, {} tokenizer)",
        score.predicted,
        score.bytes,
        score.predicted as f64 / secs.max(1e-9),
        session.backend_name(),
        tokenizer.describe()
    );
}

fn progress(total: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} tokens {elapsed} (eta {eta})")
    {
        bar.set_style(style);
    }
    bar
}

/// One window of tokens with the bytes each covers.
type Window<'a> = (&'a [i64], &'a [usize]);

/// RoPE models: independent windows of `context` tokens.
pub fn eval_windows(
    session: &Session,
    text: &Encoding,
    context: usize,
    batch: usize,
) -> Result<Score> {
    let windows: Vec<Window> = text
        .ids
        .chunks(context)
        .zip(text.covered.chunks(context))
        .filter(|w| w.0.len() >= 2)
        .collect();
    let bar = progress(windows.iter().map(|w| w.0.len() - 1).sum());
    let mut score = Score::default();
    let (full, partial): (Vec<Window>, Vec<Window>) =
        windows.into_iter().partition(|w| w.0.len() == context);
    let groups = full.chunks(batch).chain(partial.chunks(1));
    for group in groups {
        let seq = group[0].0.len() - 1;
        let ids = group
            .iter()
            .flat_map(|w| w.0[..seq].iter().copied())
            .collect();
        let logits = session.logits(&TokenBatch::new(group.len(), seq, ids)?)?;
        for (b, (ids, covered)) in group.iter().enumerate() {
            add(&mut score, &logits, b, (&ids[1..], &covered[1..]));
        }
        bar.inc((group.len() * seq) as u64);
    }
    bar.finish_and_clear();
    Ok(score)
}

/// XL models: one stream in chunks of `chunk` inputs with the memory carried.
pub fn eval_xl(
    session: &Session,
    text: &Encoding,
    chunk: usize,
    bar: &ProgressBar,
) -> Result<Score> {
    let tokens = &text.ids;
    let (inputs, targets) = (&tokens[..tokens.len() - 1], &tokens[1..]);
    let covered = text.covered.get(1..).unwrap_or_default().chunks(chunk);
    let mut memory: Option<XlMemory> = None;
    let mut score = Score::default();
    for ((x, y), c) in inputs.chunks(chunk).zip(targets.chunks(chunk)).zip(covered) {
        let (logits, next) =
            session.forward_chunk(&TokenBatch::single(x.to_vec()), memory.as_ref())?;
        add(&mut score, &logits, 0, (y, c));
        memory = Some(next);
        bar.inc(x.len() as u64);
    }
    bar.finish_and_clear();
    Ok(score)
}

/// Adds `-log softmax(logits[b, t])[targets[t]]` for every t (f64 log-sum-exp), and the bytes
/// each target covers.
fn add(score: &mut Score, logits: &Logits, b: usize, (targets, covered): Window) {
    for (t, (&target, &bytes)) in targets.iter().zip(covered).enumerate() {
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
        score.bytes += bytes;
    }
}
