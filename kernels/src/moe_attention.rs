//! `MoEAttention` over a batch: SwitchHead (experts on V and O), the E = 1 gated variant and
//! dense attention, with RoPE or Transformer-XL positions (SPEC.md sections 1-2).
//!
//! Order of work: project q and k for all rows of the batch at once, route the value side,
//! compute values expert by expert (gathered rows, one product per expert), rotate or build
//! position keys, attend per (batch row, head) in parallel, route the output side and project
//! expert by expert. Matches `switchhead_ops::moe_attention::moe_attention` row by row.

use switchhead_ops::op::{AttentionVariant, MoeAttentionAttrs, PosEncoding};

use crate::KernelError;
use crate::attention::{Head, causal_head};
use crate::error::check_len;
use crate::gemm::{Dispatch, Experts, Mat, grouped_gemm};
use crate::linear::WeightLayout::{self, RowMajor};
use crate::linear::project_rows;
use crate::parallel::par_map;
use crate::positions::{RopeTable, xl_position_keys};
use crate::routing::{ExpertGroups, Router, Routing, SlotTable, route};

/// The weights of one attention layer, shapes as `Op::MoEAttention` documents; row-major
/// except `q`, `k` and `pos_to_pk` in `proj_layout`, the routers in `sel_layout` and the V/O
/// experts in `expert_layout`.
#[derive(Debug, Clone, Copy)]
pub struct MoeAttentionWeights<'a> {
    /// `[H*dh, D]`.
    pub q: &'a [f32],
    /// `[H*dh, D]`.
    pub k: &'a [f32],
    /// `[H*E, D, dh]` (experts) or `[H*dh, D]`.
    pub v: &'a [f32],
    /// `[H*E, dh, D]` (experts) or `[D, H*dh]`.
    pub o: &'a [f32],
    /// `[H*E, D]`, experts variant only.
    pub sel_v: Option<&'a [f32]>,
    /// `[H*E, D]` (experts) or `[H, D]` (gated).
    pub sel_o: Option<&'a [f32]>,
    /// `[H*dh, D]`, XL only.
    pub pos_to_pk: Option<&'a [f32]>,
    /// How `q`, `k` and `pos_to_pk` are stored.
    pub proj_layout: WeightLayout,
    /// How the routers `sel_v`/`sel_o` are stored.
    pub sel_layout: WeightLayout,
    /// How the experts variant's `v` and `o` stacks are stored (`Panels`: the plan's
    /// `expert_panels`); the dense and gated `v`/`o` are always row-major.
    pub expert_layout: WeightLayout,
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

/// How keys and values are laid out for [`attend`]: `[batch, tk, H*dh]` rows, or the KV
/// cache's head-major `[batch, H, tk, dh]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KvLayout {
    Rows,
    HeadMajor,
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
    let (bt, btk) = (dims.batch * dims.t, dims.batch * dims.tk);
    let mut q = project(
        xq,
        bt,
        dims.d,
        (w.q, w.proj_layout),
        cx.hd,
        scale,
        cx.threads,
    );
    let mut k = project(
        xkv,
        btk,
        dims.d,
        (w.k, w.proj_layout),
        cx.hd,
        scale,
        cx.threads,
    );
    let v = values(&cx, xkv)?;
    let rel = positions(&cx, &mut q, &mut k, scale)?;
    let rel = rel.as_ref().map(|(kp, lo)| (kp.as_slice(), *lo));
    let r = attend(&cx, &q, (&k, &v, KvLayout::Rows), rel);
    outputs(&cx, xq, r)
}

/// `(x @ w^T) * scale`: `[n, d] x [out, d] -> [n, out]` (`w` in `layout`), rows split
/// across `threads`.
#[allow(clippy::too_many_arguments)] // plain operands of one product
pub(crate) fn project(
    x: &[f32],
    n: usize,
    d: usize,
    (w, layout): (&[f32], WeightLayout),
    out: usize,
    scale: f64,
    threads: usize,
) -> Vec<f32> {
    let mut y = project_rows(&x[..n * d], d, (w, layout), out, threads);
    y.iter_mut().for_each(|v| *v = (*v as f64 * scale) as f32);
    y
}

pub(crate) fn values(cx: &Ctx<'_>, xkv: &[f32]) -> Result<Vec<f32>, KernelError> {
    let (a, d, dh) = (cx.a, cx.dims.d, cx.a.d_head);
    let n = cx.dims.batch * cx.dims.tk;
    let Some(sel_v) =
        cx.w.sel_v
            .filter(|_| a.variant == AttentionVariant::ExpertsVO)
    else {
        return Ok(project(
            xkv,
            n,
            d,
            (cx.w.v, RowMajor),
            cx.hd,
            1.0,
            cx.threads,
        ));
    };
    let hd = cx.hd;
    Ok(routed(
        cx,
        (xkv, n, sel_v),
        (xkv, cx.w.v, d, dh),
        n * hd,
        |rt, slot| {
            let row = rt.row_of(slot);
            (row * d, row * hd + rt.group_of(slot) * dh)
        },
    ))
}

/// One routed expert site: routes the `n` rows of `x` with `sel`, then adds every slot's
/// `gate * (input row @ W_e)` (`stack`: `[H*E, inp, out]` in `expert_layout`) into a zeroed
/// output of `len` floats; `addr(routing, slot)` gives the slot's input and output offsets.
fn routed(
    cx: &Ctx<'_>,
    (x, n, sel): (&[f32], usize, &[f32]),
    (input, stack, inp, out): (&[f32], &[f32], usize, usize),
    len: usize,
    addr: impl Fn(&Routing, usize) -> (usize, usize),
) -> Vec<f32> {
    let routing = route(x, n, cx.dims.d, router(cx, sel), cx.threads);
    let groups = ExpertGroups::new(&routing, cx.a.heads * cx.a.experts);
    let table = SlotTable::new(
        &groups,
        &routing,
        |slot| addr(&routing, slot).0,
        |slot| addr(&routing, slot).1,
    );
    let dispatch = Dispatch {
        offsets: &groups.offsets,
        slots: table.slots(true),
    };
    let experts = Experts {
        data: stack,
        layout: cx.w.expert_layout,
        inp,
        out,
    };
    let mut y = vec![0f32; len];
    grouped_gemm(input, &dispatch, experts, &mut y, cx.threads);
    y
}

/// Applies RoPE in place, or builds the XL position keys `(table, lo)`.
fn positions(
    cx: &Ctx<'_>,
    q: &mut [f32],
    k: &mut [f32],
    scale: f64,
) -> Result<Option<(Vec<f32>, i64)>, KernelError> {
    let Dims { t, tk, d, .. } = cx.dims;
    match cx.a.pos {
        PosEncoding::Rope {
            rotate_fraction,
            base,
        } => {
            let table = RopeTable::shared(cx.a.d_head, rotate_fraction, base, tk)?;
            let offset = tk - t;
            table.rotate_rows(q, cx.hd, cx.a.d_head, |r| offset + r % t.max(1));
            table.rotate_rows(k, cx.hd, cx.a.d_head, |r| r % tk.max(1));
            Ok(None)
        }
        PosEncoding::Xl => {
            let w_pk = cx.w.pos_to_pk.unwrap_or_default();
            let lo = -(tk as i64 - 1);
            Ok(Some((
                xl_position_keys(
                    (w_pk, cx.w.proj_layout),
                    cx.hd,
                    d,
                    scale,
                    (lo, 0),
                    cx.threads,
                )?,
                lo,
            )))
        }
    }
}

/// Attention of every (batch row, head), in parallel: R `[batch*t, H*dh]`.
pub(crate) fn attend<'a>(
    cx: &Ctx<'_>,
    q: &'a [f32],
    (k, v, layout): (&'a [f32], &'a [f32], KvLayout),
    rel: Option<(&'a [f32], i64)>,
) -> Vec<f32> {
    let (h, dh, hd) = (cx.a.heads, cx.a.d_head, cx.hd);
    let Dims { batch, t, tk, .. } = cx.dims;
    let view = |data: &'a [f32], rows, b: usize, head: usize| {
        Mat {
            data,
            rows,
            cols: dh,
            rs: hd,
            cs: 1,
        }
        .row_range(b * rows, rows)
        .col_range(head * dh, dh)
    };
    let head_major = |data: &'a [f32], b: usize, head: usize| {
        let at = (b * h + head) * tk * dh;
        Mat::rows(&data[at..at + tk * dh], tk, dh)
    };
    let kv = |data: &'a [f32], b, head| match layout {
        KvLayout::Rows => view(data, tk, b, head),
        KvLayout::HeadMajor => head_major(data, b, head),
    };
    let heads = par_map(cx.threads, batch * h, |i| {
        let (b, head) = (i / h, i % h);
        let rel = rel.map(|(kp, lo)| (view(kp, kp.len() / hd, 0, head), lo));
        let inputs = Head {
            q: view(q, t, b, head),
            k: kv(k, b, head),
            v: kv(v, b, head),
            rel,
        };
        causal_head(inputs)
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

pub(crate) fn outputs(cx: &Ctx<'_>, xq: &[f32], mut r: Vec<f32>) -> Result<Vec<f32>, KernelError> {
    let (a, d, dh, hd) = (cx.a, cx.dims.d, cx.a.d_head, cx.hd);
    let n = cx.dims.batch * cx.dims.t;
    let y = match (a.variant, cx.w.sel_o) {
        (AttentionVariant::ExpertsVO, Some(sel_o)) => routed(
            cx,
            (xq, n, sel_o),
            (&r, cx.w.o, dh, d),
            n * d,
            |rt, slot| {
                let row = rt.row_of(slot);
                (row * hd + rt.group_of(slot) * dh, row * d)
            },
        ),
        (AttentionVariant::Gated, Some(sel_o)) => {
            gate_heads(cx, xq, n, sel_o, &mut r);
            project_rows(&r[..n * hd], hd, (cx.w.o, RowMajor), d, cx.threads)
        }
        _ => project_rows(&r[..n * hd], hd, (cx.w.o, RowMajor), d, cx.threads),
    };
    Ok(y)
}

/// The experts variant's router over `sel` (`[H*E, D]`, in `sel_layout`).
fn router<'a>(cx: &Ctx<'a>, sel: &'a [f32]) -> Router<'a> {
    Router {
        sel,
        layout: cx.w.sel_layout,
        groups: cx.a.heads,
        experts: cx.a.experts,
        k: cx.a.k,
    }
}

/// E = 1: `R_h *= sigmoid(float32(xq @ So^T))_h` (`sel_o` `[H, D]` in `sel_layout`).
fn gate_heads(cx: &Ctx<'_>, xq: &[f32], n: usize, sel_o: &[f32], r: &mut [f32]) {
    let (d, heads, dh) = (cx.dims.d, cx.a.heads, cx.a.d_head);
    let logits = project_rows(&xq[..n * d], d, (sel_o, cx.w.sel_layout), heads, cx.threads);
    for (row, gates) in r
        .chunks_exact_mut(heads * dh)
        .zip(logits.chunks_exact(heads))
    {
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
    let proj = w.proj_layout.stored_len(h * dh, d);
    check_len("MoEAttention q", w.q, proj)?;
    check_len("MoEAttention k", w.k, proj)?;
    check_variant(a, w, h, e, dh, d)?;
    match (a.pos, w.pos_to_pk) {
        (PosEncoding::Xl, Some(pk)) => check_len("MoEAttention pos_to_pk", pk, proj),
        (PosEncoding::Xl, None) => Err(missing("pos_to_pk")),
        _ => Ok(()),
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
            let (v, o) = (
                w.expert_layout.stored_len(dh, d),
                w.expert_layout.stored_len(d, dh),
            );
            check_len("MoEAttention v", w.v, h * e * v)?;
            check_len("MoEAttention o", w.o, h * e * o)?;
            let sel = w.sel_layout.stored_len(h * e, d);
            check_len(
                "MoEAttention sel_v",
                w.sel_v.ok_or_else(|| missing("sel_v"))?,
                sel,
            )?;
            check_len(
                "MoEAttention sel_o",
                w.sel_o.ok_or_else(|| missing("sel_o"))?,
                sel,
            )
        }
        AttentionVariant::Gated | AttentionVariant::Dense => {
            check_len("MoEAttention v", w.v, h * dh * d)?;
            check_len("MoEAttention o", w.o, d * h * dh)?;
            match (a.variant, w.sel_o) {
                (AttentionVariant::Gated, Some(s)) => {
                    check_len("MoEAttention sel_o", s, w.sel_layout.stored_len(h, d))
                }
                (AttentionVariant::Gated, None) => Err(missing("sel_o")),
                _ => Ok(()),
            }
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
