//! `CausalAttention`: softmax attention of all heads for one sequence.
//!
//! Inputs: q `[T, H*dh]` (already scaled and position-encoded), k and v `[Tk, H*dh]`, with
//! `Tk = offset + T` where the first `offset` keys are memory / cache. Query r (absolute position
//! `offset + r`) sees key c iff `c <= r + offset`: memory is always visible, the current chunk is
//! causal. Optional XL term: `L[r, c] += q_r . Kp(c - r - offset)`, with `Kp` rows for relative
//! positions `lo..`. Output `R`: `[T, H*dh]` (heads concatenated).

use crate::{OpError, Tensor, dot};

/// Position keys of the XL variant: row j is `Kp(lo + j)`, `[n, H*dh]`.
#[derive(Debug, Clone, Copy)]
pub struct RelativeKeys<'a> {
    /// The table of position keys.
    pub keys: &'a Tensor,
    /// Relative position of row 0.
    pub lo: i64,
}

/// Causal softmax attention over `heads` heads of width `d_head`.
pub fn causal_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    d_head: usize,
    rel: Option<RelativeKeys<'_>>,
) -> Result<Tensor, OpError> {
    let (t, tk) = (q.rows(), k.rows());
    check_shapes(q, k, v, heads * d_head)?;
    let offset = tk - t;
    let mut out = vec![0f32; t * heads * d_head];
    for h in 0..heads {
        let hs = h * d_head..(h + 1) * d_head;
        for r in 0..t {
            let qr = &q.row(r)[hs.clone()];
            let visible = r + offset + 1;
            let logits: Vec<f64> = (0..visible)
                .map(|c| {
                    dot(qr, &k.row(c)[hs.clone()]) + rel_term(rel, qr, h, d_head, c, r, offset)
                })
                .collect();
            let probs = softmax(&logits);
            let dst = &mut out[(r * heads + h) * d_head..(r * heads + h + 1) * d_head];
            for (j, o) in dst.iter_mut().enumerate() {
                *o = (0..visible)
                    .map(|c| probs[c] * v.row(c)[h * d_head + j] as f64)
                    .sum::<f64>() as f32;
            }
        }
    }
    Tensor::new(vec![t, heads * d_head], out)
}

fn rel_term(
    rel: Option<RelativeKeys<'_>>,
    qr: &[f32],
    h: usize,
    dh: usize,
    c: usize,
    r: usize,
    off: usize,
) -> f64 {
    let Some(rel) = rel else { return 0.0 };
    let p = c as i64 - r as i64 - off as i64;
    let row = (p - rel.lo) as usize;
    dot(qr, &rel.keys.row(row)[h * dh..(h + 1) * dh])
}

/// Numerically stable softmax in f64.
pub fn softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = logits.iter().map(|&l| (l - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|&e| e / sum).collect()
}

fn check_shapes(q: &Tensor, k: &Tensor, v: &Tensor, width: usize) -> Result<(), OpError> {
    q.expect_shape("attention q", &[q.rows(), width])?;
    k.expect_shape("attention k", &[k.rows(), width])?;
    v.expect_shape("attention v", &[k.rows(), width])?;
    if k.rows() < q.rows() {
        return Err(OpError::Shape {
            what: "attention keys".into(),
            expected: format!("at least as many keys as the {} queries", q.rows()),
            got: format!("{}", k.rows()),
        });
    }
    Ok(())
}
