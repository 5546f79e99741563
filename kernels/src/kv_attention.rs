//! `MoEAttention` with a KV cache (RoPE models): one decoding step over `t` new tokens.
//!
//! The cache holds, per layer, keys scaled by dh^-0.25 and rotated at their absolute
//! positions, and values after the expert mixture, both head-major `[batch, H, P, dh]`. The
//! new tokens take positions `P .. P + t`; query r sees every cached key and the new keys
//! c <= r. The result equals [`crate::moe_attention`] over all `P + t` tokens, restricted to
//! the last `t` rows (checked in `tests/match_reference.rs`).
//!
//! [`moe_attention_kv_rows`] steps several independent sequences at once (continuous
//! batching): one new token each, every sequence at its own position with its own cache. The
//! projections and expert products run over all the rows together; only the attention
//! itself is per sequence.

use switchhead_ops::op::{MoeAttentionAttrs, PosEncoding};

use crate::KernelError;
use crate::error::check_len;
use crate::moe_attention::{
    Ctx, Dims, Kv, MoeAttentionWeights, attend, outputs, project, validate, values,
};
use crate::positions::RopeTable;

/// The cache entering a step: `key` and `value` `[batch, H, past, dh]` (past may be 0).
#[derive(Debug, Clone, Copy)]
pub struct KvPast<'a> {
    pub key: &'a [f32],
    pub value: &'a [f32],
    pub past: usize,
}

/// A step's result: y `[batch, t, D]` and the present cache `[batch, H, past + t, dh]`.
#[derive(Debug, Clone, PartialEq)]
pub struct KvStep {
    pub y: Vec<f32>,
    pub key: Vec<f32>,
    pub value: Vec<f32>,
}

/// The result of [`moe_attention_kv_rows`]: y `[n, D]` and each sequence's present cache
/// `(key, value)` `[1, H, past_r + 1, dh]`.
#[derive(Debug, Clone, PartialEq)]
pub struct KvRows {
    pub y: Vec<f32>,
    pub caches: Vec<(Vec<f32>, Vec<f32>)>,
}

/// A RoPE layer's `(rotate_fraction, base)`, or the error for XL layers.
fn rope_of(attrs: &MoeAttentionAttrs) -> Result<(f64, f64), KernelError> {
    match attrs.pos {
        PosEncoding::Rope {
            rotate_fraction,
            base,
        } => Ok((rotate_fraction, base)),
        PosEncoding::Xl => {
            let reason = "a KV cache needs RoPE positions; XL models carry memory instead";
            Err(KernelError::attr("MoEAttention", "kv_cache", reason))
        }
    }
}

/// One step of `pasts.len()` independent sequences: `x` `[n, d]` holds one new token of each
/// (row r of sequence r), `pasts[r]` sequence r's cache (batch 1, its own `past`). Row r of
/// the result is what [`moe_attention_kv`] gives for sequence r alone.
pub fn moe_attention_kv_rows(
    attrs: &MoeAttentionAttrs,
    w: &MoeAttentionWeights<'_>,
    x: &[f32],
    d: usize,
    pasts: &[KvPast<'_>],
    threads: usize,
) -> Result<KvRows, KernelError> {
    let (rotate_fraction, base) = rope_of(attrs)?;
    let n = pasts.len();
    let dims = Dims {
        batch: n,
        t: 1,
        tk: 1,
        d,
    };
    let one = Dims { batch: 1, ..dims };
    validate(attrs, w, x, x, dims)?;
    pasts.iter().try_for_each(|p| check_past(attrs, one, *p))?;
    let hd = attrs.heads * attrs.d_head;
    let new = Ctx {
        a: attrs,
        w,
        dims,
        hd,
        threads: threads.max(1),
    };
    let mut proj = project(&new, x, x);
    proj.scale_qk((attrs.d_head as f64).powf(-0.25));
    let v = values(&new, &proj, x);
    let longest = pasts.iter().map(|p| p.past).max().unwrap_or(0);
    let table = RopeTable::shared(attrs.d_head, rotate_fraction, base, longest + 1)?;
    table.rotate_rows(proj.rows_mut(proj.q), attrs.d_head, |r| pasts[r].past);
    table.rotate_rows(proj.rows_mut(proj.k), attrs.d_head, |r| pasts[r].past);
    let new_keys: Vec<&[f32]> = proj.rows(proj.k).collect();
    let new_values: Vec<&[f32]> = v.chunks_exact(hd).collect();
    let caches: Vec<_> = pasts
        .iter()
        .enumerate()
        .map(|(r, p)| {
            let key = append(attrs, one, p.key, p.past, &new_keys[r..r + 1]);
            (
                key,
                append(attrs, one, p.value, p.past, &new_values[r..r + 1]),
            )
        })
        .collect();
    let q = proj.mat(proj.q);
    let mut r = Vec::with_capacity(n * hd);
    for (row, (key, value)) in caches.iter().enumerate() {
        let tk = pasts[row].past + 1;
        let cx = Ctx {
            dims: Dims { tk, ..one },
            ..new
        };
        let kv = Kv::HeadMajor { k: key, v: value };
        r.extend(attend(&cx, q.row_range(row, 1), kv, None));
    }
    let y = outputs(&new, &proj, r);
    Ok(KvRows { y, caches })
}

/// Runs one step over `x` `[batch, t, D]` (`dims.tk` must equal `dims.t`).
pub fn moe_attention_kv(
    attrs: &MoeAttentionAttrs,
    w: &MoeAttentionWeights<'_>,
    x: &[f32],
    dims: Dims,
    past: KvPast<'_>,
    threads: usize,
) -> Result<KvStep, KernelError> {
    let (rotate_fraction, base) = rope_of(attrs)?;
    validate(attrs, w, x, x, dims)?;
    check_past(attrs, dims, past)?;
    let hd = attrs.heads * attrs.d_head;
    let p = past.past;
    let new = Ctx {
        a: attrs,
        w,
        dims,
        hd,
        threads: threads.max(1),
    };
    let scale = (attrs.d_head as f64).powf(-0.25);
    let mut proj = project(&new, x, x);
    proj.scale_qk(scale);
    let v = values(&new, &proj, x);
    let table = RopeTable::shared(attrs.d_head, rotate_fraction, base, p + dims.t)?;
    let t = dims.t.max(1);
    table.rotate_rows(proj.rows_mut(proj.q), attrs.d_head, |r| p + r % t);
    table.rotate_rows(proj.rows_mut(proj.k), attrs.d_head, |r| p + r % t);
    let new_keys: Vec<&[f32]> = proj.rows(proj.k).collect();
    let new_values: Vec<&[f32]> = v.chunks_exact(hd).collect();
    let key = append(attrs, dims, past.key, p, &new_keys);
    let value = append(attrs, dims, past.value, p, &new_values);
    let full = Ctx {
        dims: Dims {
            tk: p + dims.t,
            ..dims
        },
        ..new
    };
    let kv = Kv::HeadMajor { k: &key, v: &value };
    let r = attend(&full, proj.mat(proj.q), kv, None);
    let y = outputs(&new, &proj, r);
    Ok(KvStep { y, key, value })
}

/// `[batch, H, p, dh]` cache followed by the new rows (`batch * t` of `H*dh`), head-major.
fn append(a: &MoeAttentionAttrs, dims: Dims, cache: &[f32], p: usize, new: &[&[f32]]) -> Vec<f32> {
    let (h, dh, t) = (a.heads, a.d_head, dims.t);
    let total = p + t;
    let mut out = Vec::with_capacity(dims.batch * h * total * dh);
    for b in 0..dims.batch {
        for head in 0..h {
            let at = (b * h + head) * p * dh;
            out.extend_from_slice(&cache[at..at + p * dh]);
            for row in &new[b * t..(b + 1) * t] {
                out.extend_from_slice(&row[head * dh..(head + 1) * dh]);
            }
        }
    }
    out
}

fn check_past(a: &MoeAttentionAttrs, dims: Dims, past: KvPast<'_>) -> Result<(), KernelError> {
    if dims.tk != dims.t {
        return Err(KernelError::Shape {
            what: "MoEAttention xkv",
            expected: format!("xq itself with a KV cache ({} rows)", dims.t),
            got: format!("{} rows", dims.tk),
        });
    }
    let len = dims.batch * a.heads * past.past * a.d_head;
    check_len("MoEAttention past_key", past.key, len)?;
    check_len("MoEAttention past_value", past.value, len)
}
