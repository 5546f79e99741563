//! Ad-hoc end-to-end check: `golden MODEL.onnx MODEL_DIR [threads]` runs the emitted model on
//! `MODEL_DIR/golden_long.safetensors` (and `golden_mem.safetensors` for XL models) and prints
//! the max relative error against the golden logits, plus timings.

use std::time::Instant;

use anyhow::{Context, bail};
use safetensors::SafeTensors;
use switchhead_runtime::{Session, SessionOptions, TokenBatch};

fn tensor<'a>(st: &'a SafeTensors<'a>, name: &str) -> anyhow::Result<(Vec<usize>, &'a [u8])> {
    let t = st.tensor(name).with_context(|| format!("tensor {name}"))?;
    Ok((t.shape().to_vec(), t.data()))
}

fn tokens(st: &SafeTensors<'_>, name: &str) -> anyhow::Result<TokenBatch> {
    let (shape, data) = tensor(st, name)?;
    let ids = data
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
        .collect();
    Ok(TokenBatch::new(shape[0], shape[1], ids)?)
}

fn floats(st: &SafeTensors<'_>, name: &str) -> anyhow::Result<Vec<f32>> {
    let (_, data) = tensor(st, name)?;
    Ok(data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
        .collect())
}

fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    got.iter()
        .zip(want)
        .fold(0f32, |m, (g, w)| m.max((g - w).abs()))
        / scale
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, dir, rest @ ..] = args.as_slice() else {
        bail!("usage: golden MODEL.onnx MODEL_DIR [threads]")
    };
    let threads = rest.first().map(|t| t.parse()).transpose()?;
    let t0 = Instant::now();
    let session = Session::load(
        model,
        SessionOptions {
            threads,
            ..Default::default()
        },
    )?;
    println!(
        "load+optimise {:?}: V={} L={} D={} xl={}",
        t0.elapsed(),
        session.vocab_size(),
        session.n_layers(),
        session.d_model(),
        session.is_xl()
    );
    let bytes = std::fs::read(format!("{dir}/golden_long.safetensors"))?;
    let st = SafeTensors::deserialize(&bytes)?;
    let tb = tokens(&st, "tokens")?;
    let t0 = Instant::now();
    let got = session.logits(&tb)?;
    println!(
        "golden_long [{}x{}]: {:?}, max rel err {:.3e}",
        tb.batch,
        tb.seq,
        t0.elapsed(),
        rel_err(&got.data, &floats(&st, "logits")?)
    );
    if session.is_xl() {
        let bytes = std::fs::read(format!("{dir}/golden_mem.safetensors"))?;
        let st = SafeTensors::deserialize(&bytes)?;
        let (l0, mem) = session.forward_chunk(&tokens(&st, "tokens0")?, None)?;
        let (l1, _) = session.forward_chunk(&tokens(&st, "tokens1")?, Some(&mem))?;
        println!(
            "golden_mem chunk0 err {:.3e}, chunk1 err {:.3e}",
            rel_err(&l0.data, &floats(&st, "logits0")?),
            rel_err(&l1.data, &floats(&st, "logits1")?)
        );
    }
    for (b, t) in [(1, 160), (1, 512), (4, 512)] {
        let tb = TokenBatch::new(
            b,
            t,
            (0..b * t)
                .map(|i| (i * 7 % session.vocab_size()) as i64)
                .collect(),
        )?;
        session.logits(&tb)?;
        let t0 = Instant::now();
        let n = 5;
        for _ in 0..n {
            session.logits(&tb)?;
        }
        println!("forward [{b}x{t}]: {:?} per pass", t0.elapsed() / n);
    }
    Ok(())
}
