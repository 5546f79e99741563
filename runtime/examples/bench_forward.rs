//! Forward-pass timing: `bench_forward [--threads N] [--batch 1,8] [--seq 256] [--iters N]
//! MODEL...` loads each model file (ONNX on the tract backend, `.shplan` on the native one)
//! and prints the median and best wall time of `Session::logits` on random tokens (XL
//! models run with empty memory), plus the max relative difference of each model's logits
//! from the first model's.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use switchhead_runtime::{Session, SessionOptions, TokenBatch};

struct Args {
    threads: usize,
    batches: Vec<usize>,
    seq: usize,
    iters: usize,
    models: Vec<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        threads: 2,
        batches: vec![1, 8],
        seq: 256,
        iters: 5,
        models: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().context("missing value");
        match arg.as_str() {
            "--threads" => a.threads = value()?.parse()?,
            "--seq" => a.seq = value()?.parse()?,
            "--iters" => a.iters = value()?.parse()?,
            "--batch" => {
                a.batches = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            _ => a.models.push(arg),
        }
    }
    if a.models.is_empty() {
        bail!("usage: bench_forward [--threads N] [--batch 1,8] [--seq N] [--iters N] MODEL...");
    }
    Ok(a)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let opts = SessionOptions {
        threads: Some(args.threads),
        ..Default::default()
    };
    let sessions = args
        .models
        .iter()
        .map(|m| {
            let t = Instant::now();
            let s = Session::load(m, opts.clone()).with_context(|| format!("loading {m}"))?;
            println!(
                "{m}: {} backend, loaded in {:.2?}",
                s.backend_name(),
                t.elapsed()
            );
            Ok(s)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    for &batch in &args.batches {
        let tokens = random_tokens(batch, args.seq, sessions[0].vocab_size());
        let mut first: Option<Vec<f32>> = None;
        for (m, s) in args.models.iter().zip(&sessions) {
            let (times, logits) = time(s, &tokens, args.iters)?;
            let diff = first.as_ref().map_or(0.0, |f| rel_diff(&logits, f));
            first.get_or_insert(logits);
            println!(
                "batch {batch} seq {} threads {}: {m}: median {:.1} ms, best {:.1} ms, max rel diff vs first {diff:.1e}",
                args.seq,
                args.threads,
                ms(times[times.len() / 2]),
                ms(times[0]),
            );
        }
    }
    Ok(())
}

fn time(
    s: &Session,
    tokens: &TokenBatch,
    iters: usize,
) -> anyhow::Result<(Vec<Duration>, Vec<f32>)> {
    let logits = s.logits(tokens)?.data; // warm-up
    let mut times = (0..iters.max(1))
        .map(|_| {
            let t = Instant::now();
            s.logits(tokens).map(|_| t.elapsed())
        })
        .collect::<Result<Vec<_>, _>>()?;
    times.sort();
    Ok((times, logits))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn random_tokens(batch: usize, seq: usize, vocab: usize) -> TokenBatch {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let ids = (0..batch * seq)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % vocab as u64) as i64
        })
        .collect();
    TokenBatch {
        batch,
        seq,
        tokens: ids,
    }
}

fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}
