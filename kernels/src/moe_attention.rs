//! `MoEAttention` over a batch: SwitchHead (experts on V and O), the E = 1 gated variant and
//! dense attention, with RoPE or Transformer-XL positions (SPEC.md sections 1-2).
//!
//! Order of work: project q, k and the router logits for all rows of the batch at once (one
//! product when the layer's projections are merged), route the value side, compute values
//! as one grouped expert product, rotate or build position keys, attend per (batch row,
//! head) in parallel, route the output side and project as one grouped expert product.
//! Matches `switchhead_ops::moe_attention::moe_attention` row by row.

use std::sync::Arc;

use switchhead_ops::op::{AttentionVariant, MoeAttentionAttrs, PosEncoding};

use crate::KernelError;
use crate::attention::{Head, causal_head};
use crate::error::check_len;
use crate::gemm::{Experts, Mat, grouped_gemm};
use crate::linear::project_rows;
use crate::parallel::par_map;
pub use crate::positions::PositionKeyCache;
use crate::positions::{RopeTable, xl_position_keys};
pub use crate::projections::Projections;
use crate::projections::{Block, Projected};
use crate::routing::{ExpertGroups, Routing, SlotTable, route_logits};
use crate::weight::WeightRef;

/// The weights of one attention layer, shapes as `Op::MoEAttention` documents: q, k and
/// the routers as [`Projections`] says; the experts variant's V/O stacks as [`WeightRef`]
/// says of expert stacks, the dense and gated `v`/`o` as projections.
#[derive(Debug, Clone, Copy)]
pub struct MoeAttentionWeights<'a> {
    /// q, k and the routers, separate or merged.
    pub proj: Projections<'a>,
    /// `[H*E, D, dh]` (experts) or `[H*dh, D]`.
    pub v: WeightRef<'a>,
    /// `[H*E, dh, D]` (experts) or `[D, H*dh]`.
    pub o: WeightRef<'a>,
    /// `[H*dh, D]`, XL only.
    pub pos_to_pk: Option<WeightRef<'a>>,
    /// Where this layer's XL position keys are kept between calls (None: computed on every
    /// call). Belongs to this layer: see [`PositionKeyCache`].
    pub pos_keys: Option<&'a PositionKeyCache>,
}

/// Sizes of one call: `xq` is `[batch, t, d]`, `xkv` is `[batch, tk, d]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub batch: usize,
    pub t: usize,
    pub tk: usize,
    pub d: usize,
}

pub(crate) struct Ctx<'a> {
    pub a: &'a MoeAttentionAttrs,
    pub w: &'a MoeAttentionWeights<'a>,
    pub dims: Dims,
    pub hd: usize,
    pub threads: usize,
}

/// Keys and values for [`attend`]: `[batch*tk, H*dh]` row views, or the KV cache's
/// head-major `[batch, H, capacity, dh]` (its first `tk` rows per head are read).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kv<'a> {
    Rows {
        k: Mat<'a>,
        v: Mat<'a>,
    },
    HeadMajor {
        k: &'a [f32],
        v: &'a [f32],
        capacity: usize,
    },
}

/// Runs the layer on a batch; returns y `[batch, t, d]`.
pub fn moe_attention(
    attrs: &MoeAttentionAttrs,
    w: &MoeAttentionWeights<'_>,
    xq: &[f32],
    xkv: &[f32],
    dims: Dims,
    threads: usize,
) -> Result<Vec<f32>, KernelError> {
    validate(attrs, w, xq, xkv, dims)?;
    let cx = Ctx {
        a: attrs,
        w,
        dims,
        hd: attrs.heads * attrs.d_head,
        threads: threads.max(1),
    };
    let scale = (attrs.d_head as f64).powf(-0.25);
    let mut p = project(&cx, xq, xkv);
    p.scale_qk(scale);
    let v = values(&cx, &p, xkv);
    let rel = positions(&cx, &mut p, scale)?;
    let rel = rel.as_ref().map(|(kp, lo)| (kp.as_slice(), *lo));
    let kv = Kv::Rows {
        k: p.mat(p.k),
        v: Mat::rows(&v, v.len() / cx.hd, cx.hd),
    };
    let r = attend(&cx, p.mat(p.q), kv, rel);
    Ok(outputs(&cx, &p, r))
}

/// q, k and the router logits of every row (unscaled).
pub(crate) fn project(cx: &Ctx<'_>, xq: &[f32], xkv: &[f32]) -> Projected {
    let Dims { batch, t, tk, d } = cx.dims;
    Projected::new(
        cx.a,
        cx.w.proj,
        (xq, batch * t),
        (xkv, batch * tk),
        d,
        cx.threads,
    )
}

/// Values `[batch*tk, H*dh]`: the grouped expert product (experts variant) or one
/// projection.
pub(crate) fn values(cx: &Ctx<'_>, p: &Projected, xkv: &[f32]) -> Vec<f32> {
    let (d, dh, hd) = (cx.dims.d, cx.a.d_head, cx.hd);
    let n = cx.dims.batch * cx.dims.tk;
    match p
        .sel_v
        .filter(|_| cx.a.variant == AttentionVariant::ExpertsVO)
    {
        Some(sel_v) => routed(
            cx,
            &routing(cx, p, sel_v),
            (xkv, cx.w.v, d, dh),
            n * hd,
            |rt, slot| {
                let row = rt.row_of(slot);
                (row * d, row * hd + rt.group_of(slot) * dh)
            },
        ),
        None => project_rows(&xkv[..n * d], d, cx.w.v, hd, cx.threads),
    }
}

/// The routing of the experts variant from a block of router logits.
fn routing(cx: &Ctx<'_>, p: &Projected, logits: Block) -> Routing {
    let row = |i: usize| p.row(logits, i);
    let n = p.rows(logits).len();
    route_logits(row, n, (cx.a.heads, cx.a.experts, cx.a.k), cx.threads)
}

/// One routed expert site: adds every slot's `gate * (input row @ W_e)` (`stack`:
/// `[H*E, inp, out]`) into a zeroed output of `len` floats;
/// `addr(routing, slot)` gives the slot's input and output offsets.
fn routed(
    cx: &Ctx<'_>,
    routing: &Routing,
    (input, stack, inp, out): (&[f32], WeightRef<'_>, usize, usize),
    len: usize,
    addr: impl Fn(&Routing, usize) -> (usize, usize),
) -> Vec<f32> {
    let groups = ExpertGroups::new(routing, cx.a.heads * cx.a.experts);
    let table = SlotTable::new(
        &groups,
        routing,
        |slot| addr(routing, slot).0,
        |slot| addr(routing, slot).1,
    );
    let dispatch = groups.dispatch(table.slots(true));
    let experts = Experts { w: stack, inp, out };
    let mut y = vec![0f32; len];
    grouped_gemm(input, &dispatch, experts, &mut y, cx.threads);
    y
}

/// XL position keys `[P, H*dh]` and the relative position of their row 0.
type RelativeKeys = (Arc<Vec<f32>>, i64);

/// Applies RoPE to q and k in place, or builds (or takes from the layer's cache) the XL
/// position keys `(table, lo)`.
fn positions(
    cx: &Ctx<'_>,
    p: &mut Projected,
    scale: f64,
) -> Result<Option<RelativeKeys>, KernelError> {
    let Dims { t, tk, d, .. } = cx.dims;
    match cx.a.pos {
        PosEncoding::Rope {
            rotate_fraction,
            base,
        } => {
            let table = RopeTable::shared(cx.a.d_head, rotate_fraction, base, tk)?;
            let offset = tk - t;
            let dh = cx.a.d_head;
            table.rotate_rows(p.rows_mut(p.q), dh, |r| offset + r % t.max(1));
            table.rotate_rows(p.rows_mut(p.k), dh, |r| r % tk.max(1));
            Ok(None)
        }
        PosEncoding::Xl => {
            let w_pk = cx.w.pos_to_pk.ok_or_else(|| missing("pos_to_pk"))?;
            let lo = -(tk as i64 - 1);
            let table = match cx.w.pos_keys {
                Some(cache) => cache.keys(w_pk, cx.hd, d, scale, (lo, 0), cx.threads)?,
                None => Arc::new(xl_position_keys(
                    w_pk,
                    cx.hd,
                    d,
                    scale,
                    (lo, 0),
                    cx.threads,
                )?),
            };
            Ok(Some((table, lo)))
        }
    }
}

/// Attention of every (batch row, head), in parallel: q `[batch*t, H*dh]`; R
/// `[batch*t, H*dh]`.
pub(crate) fn attend<'a>(
    cx: &Ctx<'_>,
    q: Mat<'a>,
    kv: Kv<'a>,
    rel: Option<(&'a [f32], i64)>,
) -> Vec<f32> {
    let (h, dh, hd) = (cx.a.heads, cx.a.d_head, cx.hd);
    let Dims { batch, t, tk, .. } = cx.dims;
    let view = |m: Mat<'a>, rows, b: usize, head: usize| {
        m.row_range(b * rows, rows).col_range(head * dh, dh)
    };
    let head_major = |data: &'a [f32], capacity: usize, b: usize, head: usize| {
        let at = (b * h + head) * capacity * dh;
        Mat::rows(&data[at..at + tk * dh], tk, dh)
    };
    let heads = par_map(cx.threads, batch * h, |i| {
        let (b, head) = (i / h, i % h);
        let rel = rel.map(|(kp, lo)| {
            let keys = Mat::rows(kp, kp.len() / hd, hd);
            (view(keys, keys.rows, 0, head), lo)
        });
        let (k, v) = match kv {
            Kv::Rows { k, v } => (view(k, tk, b, head), view(v, tk, b, head)),
            Kv::HeadMajor { k, v, capacity } => (
                head_major(k, capacity, b, head),
                head_major(v, capacity, b, head),
            ),
        };
        causal_head(Head {
            q: view(q, t, b, head),
            k,
            v,
            rel,
        })
    });
    let mut r = vec![0f32; batch * t * hd];
    for (i, out) in heads.iter().enumerate() {
        let (b, head) = (i / h, i % h);
        for (row, src) in out.chunks_exact(dh).enumerate() {
            let at = (b * t + row) * hd + head * dh;
            r[at..at + dh].copy_from_slice(src);
        }
    }
    r
}

/// The output side: routed experts, the gated heads' projection or the dense one.
pub(crate) fn outputs(cx: &Ctx<'_>, p: &Projected, mut r: Vec<f32>) -> Vec<f32> {
    let (a, d, dh, hd) = (cx.a, cx.dims.d, cx.a.d_head, cx.hd);
    let n = cx.dims.batch * cx.dims.t;
    match (a.variant, p.sel_o) {
        (AttentionVariant::ExpertsVO, Some(sel_o)) => routed(
            cx,
            &routing(cx, p, sel_o),
            (&r, cx.w.o, dh, d),
            n * d,
            |rt, slot| {
                let row = rt.row_of(slot);
                (row * hd + rt.group_of(slot) * dh, row * d)
            },
        ),
        (AttentionVariant::Gated, Some(sel_o)) => {
            gate_heads(cx, p, sel_o, &mut r);
            project_rows(&r[..n * hd], hd, cx.w.o, d, cx.threads)
        }
        _ => project_rows(&r[..n * hd], hd, cx.w.o, d, cx.threads),
    }
}

/// E = 1: `R_h *= sigmoid(float32(xq @ So^T))_h` (`logits`: the `[n, H]` gate logits).
fn gate_heads(cx: &Ctx<'_>, p: &Projected, logits: Block, r: &mut [f32]) {
    let (heads, dh) = (cx.a.heads, cx.a.d_head);
    for (row, gates) in r.chunks_exact_mut(heads * dh).zip(p.rows(logits)) {
        for (head, &l) in row.chunks_exact_mut(dh).zip(gates) {
            let g = switchhead_ops::sigmoid(l as f64);
            head.iter_mut().for_each(|v| *v = (*v as f64 * g) as f32);
        }
    }
}

pub(crate) fn validate(
    a: &MoeAttentionAttrs,
    w: &MoeAttentionWeights<'_>,
    xq: &[f32],
    xkv: &[f32],
    dims: Dims,
) -> Result<(), KernelError> {
    let Dims { batch, t, tk, d } = dims;
    let (h, e, dh) = (a.heads, a.experts, a.d_head);
    if h == 0 || dh == 0 || d == 0 {
        return Err(KernelError::attr(
            "MoEAttention",
            "heads",
            "heads, d_head and d_model must be > 0",
        ));
    }
    if !a.causal {
        return Err(KernelError::attr(
            "MoEAttention",
            "causal",
            "only causal attention (causal = 1) is supported",
        ));
    }
    if tk < t {
        return Err(KernelError::Shape {
            what: "MoEAttention xkv",
            expected: format!("at least the {t} query rows"),
            got: format!("{tk} rows"),
        });
    }
    check_len("MoEAttention xq", xq, batch * t * d)?;
    check_len("MoEAttention xkv", xkv, batch * tk * d)?;
    check_projections(a, w, dims)?;
    check_variant(a, w, h, e, dh, d)?;
    match (a.pos, w.pos_to_pk) {
        (PosEncoding::Xl, Some(pk)) => pk.check("MoEAttention pos_to_pk", 1, h * dh, d),
        (PosEncoding::Xl, None) => Err(missing("pos_to_pk")),
        _ => Ok(()),
    }
}

/// q, k and the routers: one merged `qkr` (xq and xkv the same rows) or separate weights.
fn check_projections(
    a: &MoeAttentionAttrs,
    w: &MoeAttentionWeights<'_>,
    dims: Dims,
) -> Result<(), KernelError> {
    let (d, blocks) = (dims.d, a.merged_blocks());
    match w.proj {
        Projections::Merged(qkr) => {
            if dims.t != dims.tk {
                return Err(KernelError::Shape {
                    what: "MoEAttention xkv",
                    expected: format!("xq itself ({} rows) with merged projections", dims.t),
                    got: format!("{} rows", dims.tk),
                });
            }
            qkr.check("MoEAttention qkr", 1, blocks.total(), d)
        }
        Projections::Sides { qo, kv } => {
            let (wq, wk) = blocks.sides();
            qo.check("MoEAttention qo", 1, wq, d)?;
            kv.check("MoEAttention kv", 1, wk, d)
        }
        Projections::Separate { q, k, sel_v, sel_o } => {
            q.check("MoEAttention q", 1, blocks.q, d)?;
            k.check("MoEAttention k", 1, blocks.k, d)?;
            let routers = [
                ("MoEAttention sel_v", "sel_v", sel_v, blocks.sel_v),
                ("MoEAttention sel_o", "sel_o", sel_o, blocks.sel_o),
            ];
            for (what, name, sel, rows) in routers {
                match sel {
                    _ if rows == 0 => {}
                    Some(s) => s.check(what, 1, rows, d)?,
                    None => return Err(missing(name)),
                }
            }
            Ok(())
        }
    }
}

fn check_variant(
    a: &MoeAttentionAttrs,
    w: &MoeAttentionWeights<'_>,
    h: usize,
    e: usize,
    dh: usize,
    d: usize,
) -> Result<(), KernelError> {
    match a.variant {
        AttentionVariant::ExpertsVO => {
            if e == 0 || a.k == 0 || a.k > e || e > 64 {
                let reason = format!("need 1 <= k ({}) <= experts ({e}) <= 64", a.k);
                return Err(KernelError::attr("MoEAttention", "k", reason));
            }
            w.v.check("MoEAttention v", h * e, dh, d)?;
            w.o.check("MoEAttention o", h * e, d, dh)
        }
        AttentionVariant::Gated | AttentionVariant::Dense => {
            w.v.check("MoEAttention v", 1, h * dh, d)?;
            w.o.check("MoEAttention o", 1, d, h * dh)
        }
    }
}

fn missing(what: &str) -> KernelError {
    KernelError::Shape {
        what: "MoEAttention inputs",
        expected: format!("a {what} input for this variant"),
        got: "none".into(),
    }
}
