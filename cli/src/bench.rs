//! `switchhead bench MODEL --batch B --seq T --runs N [--warmup W] [--threads N] [--decode N]
//! [--json]`: wall-clock timing of the runtime on one model.
//!
//! MODEL is any file [`Session::load`] accepts (an ONNX file from `switchhead-compile`, or a
//! native plan) or a checkpoint (a directory, `.safetensors` or `.pth`), compiled in memory to
//! the default ONNX form first (with a KV cache for `--decode` on RoPE models; not timed). Tokens are pseudo-random with a fixed seed
//! ([`bench_tokens`], reproducible from other languages), the same on every run. XL models run
//! with empty memory, as [`Session::logits`] does.
//!
//! Forward mode times `runs` calls of `logits` on `[batch, seq]` after `warmup` untimed ones
//! and reports the median, min, p10, p90 and max in milliseconds and the throughput
//! `batch*seq / median` in tokens/s. Decode mode (`--decode N`) runs a [`Session::decoder_batch`]
//! with no context limit (so no cache restart): a `seq`-token prompt (not timed), then N
//! single-token steps, each timed (tokens from the generator with seed + 1), repeated for
//! `warmup` untimed and `runs` timed decoders; it reports the statistics over all timed steps and `batch / median step`
//! tokens/s. RoPE files need the KV-cache interface (`switchhead-compile --kv-cache`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use switchhead_runtime::native::profile;
use switchhead_runtime::{Session, SessionOptions, TokenBatch};

use crate::model_arg::ModelArg;
use crate::open::{BackendArgs, OpenOptions, Opened, open};

/// Arguments of `switchhead bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArg,
    /// Sequences per run.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Tokens per sequence (the prompt length with --decode).
    #[arg(long, default_value_t = 256)]
    pub seq: usize,
    /// Timed runs.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Time this many single-token decode steps after a --seq token prompt instead of a full
    /// forward pass.
    #[arg(long, value_name = "N")]
    pub decode: Option<usize>,
    /// Seed of the token generator.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also report the time per op type per timed forward pass (native `.shplan` executor
    /// only; the warmup passes are not counted).
    #[arg(long, conflicts_with = "decode")]
    pub profile: bool,
}

/// Time of one op type per forward pass.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpTime {
    pub op: &'static str,
    pub nodes: u64,
    pub ms: f64,
    pub share: f64,
}

/// Timing statistics over the timed runs (milliseconds).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub median_ms: f64,
    pub min_ms: f64,
    pub p10_ms: f64,
    pub p90_ms: f64,
    pub max_ms: f64,
}

impl Stats {
    /// Statistics of `times` (at least one); percentiles interpolate linearly between ranks.
    pub fn of(times: &[Duration]) -> Stats {
        let mut ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        Stats {
            median_ms: percentile(&ms, 0.5),
            min_ms: ms.first().copied().unwrap_or(f64::NAN),
            p10_ms: percentile(&ms, 0.1),
            p90_ms: percentile(&ms, 0.9),
            max_ms: ms.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// The `q` quantile of sorted `ms`, linear between the two nearest ranks.
fn percentile(ms: &[f64], q: f64) -> f64 {
    if ms.is_empty() {
        return f64::NAN;
    }
    let pos = q * (ms.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    ms[lo] + (ms[hi] - ms[lo]) * (pos - lo as f64)
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
struct Report {
    model: String,
    backend: &'static str,
    mode: &'static str,
    batch: usize,
    seq: usize,
    decode_steps: Option<usize>,
    runs: usize,
    warmup: usize,
    threads: usize,
    seed: u64,
    load_ms: f64,
    #[serde(flatten)]
    stats: Stats,
    tokens_per_s: f64,
    times_ms: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<Vec<OpTime>>,
    /// The CPU kernel path of each weight format (`switchhead_runtime::kernel_paths`).
    kernel_paths: String,
    /// The process's peak resident memory so far (Linux `VmHWM`): load, warmup and runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    peak_rss_kib: Option<u64>,
}

/// Runs `switchhead bench`.
pub fn run(args: Args) -> Result<()> {
    if args.batch == 0 || args.seq == 0 || args.runs == 0 {
        bail!("--batch, --seq and --runs must be at least 1");
    }
    let threads = SessionOptions {
        threads: args.threads,
        ..Default::default()
    }
    .resolved_threads();
    let start = Instant::now();
    let loaded = load(&args.model, threads, args.decode.is_some(), args.backend)?;
    let session = loaded.session();
    let load_ms = start.elapsed().as_secs_f64() * 1e3;
    let tokens = bench_tokens(args.batch, args.seq, session.vocab_size(), args.seed);
    let tokens = TokenBatch::new(args.batch, args.seq, tokens)?;
    if args.profile && session.backend_name() != "native" {
        bail!("--profile times the native executor: give a .shplan file");
    }
    profile::enable(args.profile);
    let (mode, times, per_s) = match args.decode {
        None => (
            "forward",
            time_forward(session, &tokens, &args)?,
            args.batch * args.seq,
        ),
        Some(steps) => (
            "decode",
            time_decode(session, &tokens, steps, &args)?,
            args.batch,
        ),
    };
    let stats = Stats::of(&times);
    let passes = args.runs as u64; // --profile is forward only
    let profile = args.profile.then(|| op_times(profile::take(), passes));
    profile::enable(false);
    let report = Report {
        model: args.model.model.display().to_string(),
        backend: session.backend_name(),
        mode,
        batch: args.batch,
        seq: args.seq,
        decode_steps: args.decode,
        runs: args.runs,
        warmup: args.warmup,
        threads,
        seed: args.seed,
        load_ms,
        tokens_per_s: per_s as f64 / (stats.median_ms / 1e3),
        stats,
        times_ms: times.iter().map(|d| d.as_secs_f64() * 1e3).collect(),
        profile,
        kernel_paths: switchhead_runtime::kernel_paths(),
        peak_rss_kib: peak_rss_kib(),
    };
    match args.json {
        true => println!("{}", serde_json::to_string(&report)?),
        false => print_text(&report),
    }
    Ok(())
}

fn print_text(r: &Report) {
    let s = &r.stats;
    println!(
        "model: {} (backend {}, {} threads)",
        r.model, r.backend, r.threads
    );
    let what = match r.decode_steps {
        None => format!("forward [{}, {}]", r.batch, r.seq),
        Some(n) => format!(
            "decode {n} steps after a {}-token prompt, batch {}",
            r.seq, r.batch
        ),
    };
    println!(
        "{what}, {} runs after {} warmup, load {:.1} ms",
        r.runs, r.warmup, r.load_ms
    );
    let unit = if r.decode_steps.is_some() {
        " per step"
    } else {
        ""
    };
    println!("median: {:.3} ms{unit}", s.median_ms);
    println!(
        "spread: min {:.3} ms, p10 {:.3} ms, p90 {:.3} ms, max {:.3} ms",
        s.min_ms, s.p10_ms, s.p90_ms, s.max_ms
    );
    println!("throughput: {:.1} tokens/s", r.tokens_per_s);
    println!("kernel paths: {}", r.kernel_paths);
    if let Some(kib) = r.peak_rss_kib {
        println!("peak RSS: {:.1} MiB", kib as f64 / 1024.0);
    }
    for t in r.profile.iter().flatten() {
        println!(
            "profile: {:<14} {:>4} nodes/pass {:>10.3} ms/pass {:>5.1}%",
            t.op,
            t.nodes,
            t.ms,
            100.0 * t.share
        );
    }
}

/// This process's peak resident set size in KiB (`VmHWM` in `/proc/self/status`; None where
/// that file does not exist or lacks the line).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Per-pass times by op, largest first, from the executor's totals over `passes` passes.
fn op_times(totals: Vec<(&'static str, u64, Duration)>, passes: u64) -> Vec<OpTime> {
    let all: f64 = totals.iter().map(|t| t.2.as_secs_f64()).sum();
    let mut out: Vec<OpTime> = totals
        .into_iter()
        .map(|(op, n, t)| OpTime {
            op,
            nodes: n / passes.max(1),
            ms: t.as_secs_f64() * 1e3 / passes.max(1) as f64,
            share: t.as_secs_f64() / all.max(f64::MIN_POSITIVE),
        })
        .collect();
    out.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    out
}

/// A session on a model file, or on a checkpoint compiled to a temporary file.
enum Loaded {
    File(Session),
    Checkpoint(Opened),
}

impl Loaded {
    fn session(&self) -> &Session {
        match self {
            Loaded::File(s) => s,
            Loaded::Checkpoint(o) => &o.session,
        }
    }
}

/// Checkpoints go through [`open`] (with a KV cache for `decode` on RoPE models); anything
/// else straight to [`Session::load`], which says what it accepts.
fn load(model: &ModelArg, threads: usize, decode: bool, backend: BackendArgs) -> Result<Loaded> {
    let opts = OpenOptions {
        threads: Some(threads),
        kv_cache: decode,
        ..Default::default()
    }
    .with_backend(backend);
    if is_checkpoint(&model.model) {
        return Ok(Loaded::Checkpoint(open(model, opts)?));
    }
    let opts = SessionOptions {
        threads: Some(threads),
        backend: opts.backend,
        dtype: opts.dtype,
    };
    let session =
        Session::load(&model.model, opts).with_context(|| model.model.display().to_string())?;
    Ok(Loaded::File(session))
}

/// A checkpoint (compiled first) rather than a model file for [`Session::load`].
fn is_checkpoint(path: &Path) -> bool {
    path.is_dir()
        || path
            .extension()
            .is_some_and(|e| e == "safetensors" || e == "pth" || e == "pt")
}

fn time_forward(session: &Session, tokens: &TokenBatch, args: &Args) -> Result<Vec<Duration>> {
    for _ in 0..args.warmup {
        session.logits(tokens)?;
    }
    // the profile covers the timed runs only: a first pass also faults the weights in
    profile::take();
    let mut times = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        let start = Instant::now();
        let logits = session.logits(tokens)?;
        times.push(start.elapsed());
        std::hint::black_box(logits);
    }
    Ok(times)
}

/// Per-step times of `steps` single-token steps after `prompt`, over `runs` decoders (after
/// `warmup` untimed ones).
fn time_decode(
    session: &Session,
    prompt: &TokenBatch,
    steps: usize,
    args: &Args,
) -> Result<Vec<Duration>> {
    if steps == 0 {
        bail!("--decode needs at least 1 step");
    }
    let next = bench_tokens(
        args.batch,
        steps,
        session.vocab_size(),
        args.seed.wrapping_add(1),
    );
    let mut times = Vec::with_capacity(args.runs * steps);
    for run in 0..args.warmup + args.runs {
        let mut decoder = session.decoder_batch(args.batch)?.with_context(None);
        decoder.step(prompt)?;
        for s in 0..steps {
            let ids = (0..args.batch).map(|b| next[b * steps + s]).collect();
            let token = TokenBatch::new(args.batch, 1, ids)?;
            let start = Instant::now();
            let logits = decoder.step(&token)?;
            if run >= args.warmup {
                times.push(start.elapsed());
            }
            std::hint::black_box(logits);
        }
    }
    Ok(times)
}

/// `batch * seq` pseudo-random tokens in `0..vocab`: token i (row-major) is
/// `splitmix64(seed + (i + 1) * 0x9E3779B97F4A7C15) % vocab` (wrapping arithmetic), which
/// other tools can reproduce exactly.
pub fn bench_tokens(batch: usize, seq: usize, vocab: usize, seed: u64) -> Vec<i64> {
    let vocab = vocab.max(1) as u64;
    (0..(batch * seq) as u64)
        .map(|i| (mix(seed.wrapping_add((i + 1).wrapping_mul(GOLDEN))) % vocab) as i64)
        .collect()
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The splitmix64 finaliser.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_between_ranks() {
        let times: Vec<Duration> = [5, 1, 3, 2, 4].map(Duration::from_millis).to_vec();
        let s = Stats::of(&times);
        assert_eq!((s.min_ms, s.median_ms, s.max_ms), (1.0, 3.0, 5.0));
        assert!((s.p10_ms - 1.4).abs() < 1e-9 && (s.p90_ms - 4.6).abs() < 1e-9);
    }

    #[test]
    fn tokens_are_in_range_and_reproducible() {
        let a = bench_tokens(2, 50, 17, 7);
        assert_eq!(a, bench_tokens(2, 50, 17, 7));
        assert_ne!(a, bench_tokens(2, 50, 17, 8));
        assert!(a.iter().all(|&t| (0..17).contains(&t)));
        // Pinned so that scripts/bench/race.py's copy of the generator stays in step.
        assert_eq!(bench_tokens(1, 4, 8000, 0), vec![7535, 3700, 1679, 6444]);
    }
}
