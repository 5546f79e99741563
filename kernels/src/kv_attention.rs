//! `MoEAttention` with a KV cache (RoPE models): one decoding step over `t` new tokens.
//!
//! The cache holds, per layer, keys scaled by dh^-0.25 and rotated at their absolute
//! positions, and values after the expert mixture, both head-major `[batch, H, P, dh]`. The
//! new tokens take positions `P .. P + t`; query r sees every cached key and the new keys
//! c <= r. The result equals [`crate::moe_attention`] over all `P + t` tokens, restricted to
//! the last `t` rows (checked in `tests/match_reference.rs`).
//!
//! [`moe_attention_kv_in_place`] appends to a cache with spare capacity (the decoders'
//! form: no copy of the cache per step); [`moe_attention_kv`] takes and returns the ONNX
//! step's compact tensors.
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

/// A layer's cache appended in place: `key` and `value` `[batch, H, capacity, dh]`, rows
/// `0..past` of each (batch row, head) filled, the rest room for new rows (a step of `t`
/// tokens needs `past + t <= capacity`).
#[derive(Debug)]
pub struct KvSlab<'a> {
    pub key: &'a mut [f32],
    pub value: &'a mut [f32],
    pub past: usize,
    pub capacity: usize,
}

/// A step's result: y `[batch, t, D]` and the present cache `[batch, H, past + t, dh]`.
#[derive(Debug, Clone, PartialEq)]
pub struct KvStep {
    pub y: Vec<f32>,
    pub key: Vec<f32>,
    pub value: Vec<f32>,
}

/// `blocks` blocks of `past` rows of `dh` floats, each block `from` rows apart in `cache`,
/// copied into blocks `to` rows apart (`past <= to`; the rows past `past` are zero): a
/// cache given room to grow, or (to = past) its compact form.
pub fn kv_with_capacity(
    cache: &[f32],
    blocks: usize,
    (past, from): (usize, usize),
    to: usize,
    dh: usize,
) -> Vec<f32> {
    let mut out = vec![0f32; blocks * to * dh];
    if past == 0 || dh == 0 {
        return out;
    }
    for (i, block) in out.chunks_exact_mut(to * dh).enumerate() {
        let at = i * from * dh;
        block[..past * dh].copy_from_slice(&cache[at..at + past * dh]);
    }
    out
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

/// One step of `slabs.len()` independent sequences: `x` `[n, d]` holds one new token of each
/// (row r of sequence r), `slabs[r]` sequence r's cache (batch 1, its own `past`), which the
/// step extends in place by one row. Row r of the result is what [`moe_attention_kv`] gives
/// for sequence r alone.
pub fn moe_attention_kv_rows(
    attrs: &MoeAttentionAttrs,
    w: &MoeAttentionWeights<'_>,
    x: &[f32],
    d: usize,
    slabs: &mut [KvSlab<'_>],
    threads: usize,
) -> Result<Vec<f32>, KernelError> {
    let (rotate_fraction, base) = rope_of(attrs)?;
    let n = slabs.len();
    let dims = Dims {
        batch: n,
        t: 1,
        tk: 1,
        d,
    };
    let one = Dims { batch: 1, ..dims };
    validate(attrs, w, x, x, dims)?;
    slabs.iter().try_for_each(|s| check_slab(attrs, one, s))?;
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
    let longest = slabs.iter().map(|s| s.past).max().unwrap_or(0);
    let table = RopeTable::shared(attrs.d_head, rotate_fraction, base, longest + 1)?;
    table.rotate_rows(proj.rows_mut(proj.q), attrs.d_head, |r| slabs[r].past);
    table.rotate_rows(proj.rows_mut(proj.k), attrs.d_head, |r| slabs[r].past);
    let new_keys: Vec<&[f32]> = proj.rows(proj.k).collect();
    let new_values: Vec<&[f32]> = v.chunks_exact(hd).collect();
    let q = proj.mat(proj.q);
    let mut r = Vec::with_capacity(n * hd);
    for (row, slab) in slabs.iter_mut().enumerate() {
        let rows = row..row + 1;
        write_rows(attrs, one, slab, &new_keys[rows.clone()], &new_values[rows]);
        let cx = Ctx {
            dims: Dims {
                tk: slab.past + 1,
                ..one
            },
            ..new
        };
        r.extend(attend(&cx, q.row_range(row, 1), slab.kv(), None));
    }
    Ok(outputs(&new, &proj, r))
}

/// Runs one step over `x` `[batch, t, D]` (`dims.tk` must equal `dims.t`), the cache given
/// as the `[batch, H, past, dh]` tensors of an ONNX step: returns y and the present cache.
pub fn moe_attention_kv(
    attrs: &MoeAttentionAttrs,
    w: &MoeAttentionWeights<'_>,
    x: &[f32],
    dims: Dims,
    past: KvPast<'_>,
    threads: usize,
) -> Result<KvStep, KernelError> {
    // the past must hold what it claims before it is copied; the step checks the rest
    check_past(attrs, dims, past)?;
    let (p, total) = (past.past, past.past + dims.t);
    let blocks = dims.batch * attrs.heads;
    let grow = |c: &[f32]| kv_with_capacity(c, blocks, (p, p), total, attrs.d_head);
    let (mut key, mut value) = (grow(past.key), grow(past.value));
    let slab = KvSlab {
        key: &mut key,
        value: &mut value,
        past: p,
        capacity: total,
    };
    let y = moe_attention_kv_in_place(attrs, w, x, dims, slab, threads)?;
    Ok(KvStep { y, key, value })
}

/// Runs one step over `x` `[batch, t, D]` (`dims.tk` must equal `dims.t`), appending the new
/// keys and values to `slab` in place (rows `past .. past + t`): returns y `[batch, t, D]`.
pub fn moe_attention_kv_in_place(
    attrs: &MoeAttentionAttrs,
    w: &MoeAttentionWeights<'_>,
    x: &[f32],
    dims: Dims,
    mut slab: KvSlab<'_>,
    threads: usize,
) -> Result<Vec<f32>, KernelError> {
    let (rotate_fraction, base) = rope_of(attrs)?;
    validate(attrs, w, x, x, dims)?;
    check_slab(attrs, dims, &slab)?;
    let hd = attrs.heads * attrs.d_head;
    let p = slab.past;
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
    write_rows(attrs, dims, &mut slab, &new_keys, &new_values);
    let full = Ctx {
        dims: Dims {
            tk: p + dims.t,
            ..dims
        },
        ..new
    };
    let r = attend(&full, proj.mat(proj.q), slab.kv(), None);
    Ok(outputs(&new, &proj, r))
}

impl KvSlab<'_> {
    /// The cache as [`attend`] reads it.
    fn kv(&self) -> Kv<'_> {
        Kv::HeadMajor {
            k: self.key,
            v: self.value,
            capacity: self.capacity,
        }
    }
}

/// Writes the new rows (`batch * t` of `H*dh`, keys and values) at rows `past .. past + t`
/// of every (batch row, head) of the slab.
fn write_rows(
    a: &MoeAttentionAttrs,
    dims: Dims,
    slab: &mut KvSlab<'_>,
    keys: &[&[f32]],
    values: &[&[f32]],
) {
    let (h, dh, t, cap) = (a.heads, a.d_head, dims.t, slab.capacity);
    for (cache, new) in [(&mut *slab.key, keys), (&mut *slab.value, values)] {
        for b in 0..dims.batch {
            for head in 0..h {
                let at = ((b * h + head) * cap + slab.past) * dh;
                let block = &mut cache[at..at + t * dh];
                for (dst, row) in block.chunks_exact_mut(dh).zip(&new[b * t..(b + 1) * t]) {
                    dst.copy_from_slice(&row[head * dh..(head + 1) * dh]);
                }
            }
        }
    }
}

fn check_slab(a: &MoeAttentionAttrs, dims: Dims, slab: &KvSlab<'_>) -> Result<(), KernelError> {
    check_tk(dims)?;
    if slab.past + dims.t > slab.capacity {
        return Err(KernelError::Shape {
            what: "MoEAttention KV cache",
            expected: format!("room for {} more rows", dims.t),
            got: format!("{} of {} rows filled", slab.past, slab.capacity),
        });
    }
    let len = dims.batch * a.heads * slab.capacity * a.d_head;
    check_len("MoEAttention past_key", slab.key, len)?;
    check_len("MoEAttention past_value", slab.value, len)
}

fn check_tk(dims: Dims) -> Result<(), KernelError> {
    if dims.tk != dims.t {
        return Err(KernelError::Shape {
            what: "MoEAttention xkv",
            expected: format!("xq itself with a KV cache ({} rows)", dims.t),
            got: format!("{} rows", dims.tk),
        });
    }
    Ok(())
}

fn check_past(a: &MoeAttentionAttrs, dims: Dims, past: KvPast<'_>) -> Result<(), KernelError> {
    check_tk(dims)?;
    let len = dims.batch * a.heads * past.past * a.d_head;
    check_len("MoEAttention past_key", past.key, len)?;
    check_len("MoEAttention past_value", past.value, len)
}
