//! Embedding the runtime: load a compiled model and generate text greedily.
//!
//! ```sh
//! cargo run --bin switchhead-compile -- testdata/models/rope -o rope.onnx --kv-cache
//! cargo run -p switchhead-runtime --example generate -- rope.onnx "And God said" 80
//! ```
//!
//! RoPE models need the KV cache (`--kv-cache`); XL models carry their memory by themselves.
//! The whole program is the few lines of `main` below: a `Session`, a `Decoder`, a loop.

use std::io::Write;

use switchhead_runtime::{Session, SessionOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(model), Some(prompt)) = (args.next(), args.next()) else {
        return Err("usage: generate MODEL.onnx PROMPT [TOKENS]".into());
    };
    let tokens: usize = args.next().map_or(Ok(80), |n| n.parse())?;

    let session = Session::load(&model, SessionOptions::default())?;
    let mut decoder = session.decoder()?;
    let prompt: Vec<i64> = prompt.bytes().map(i64::from).collect();
    let mut logits = decoder.feed(&prompt)?;

    let mut out = std::io::stdout().lock();
    out.write_all(&prompt.iter().map(|&t| t as u8).collect::<Vec<u8>>())?;
    for _ in 0..tokens {
        let next = argmax(&logits);
        out.write_all(&[next])?;
        out.flush()?;
        logits = decoder.feed(&[i64::from(next)])?;
    }
    writeln!(out)?;
    Ok(())
}

/// The most likely byte.
fn argmax(logits: &[f32]) -> u8 {
    let best = (0..logits.len().min(256)).fold(0, |b, i| if logits[i] > logits[b] { i } else { b });
    best as u8
}
