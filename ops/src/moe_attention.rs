//! `MoEAttention`: one SwitchHead attention layer (SPEC.md section 1), plus the two dense
//! relatives that share its skeleton: the E = 1 gated variant and plain dense attention.
//!
//! Inputs: xq `[T, D]` (query side), xkv `[Tk, D]` (key/value side, memory first), weights
//! (no biases). `q = xq Wq^T s`, `k = xkv Wk^T s` with `s = dh^-0.25`; positions (RoPE on q
//! and k, or the XL term); values and outputs as [`ValueOutput`] says. Output `[T, D]` and the
//! routing decisions of the value router (over Tk rows) and the output router (over T rows).

use crate::attention::{RelativeKeys, causal_attention};
use crate::linear::{linear, matmul_rows};
use crate::op::{Merge, MergedBlocks};
use crate::rope::Rope;
use crate::router::{Routing, sigmoid_topk};
use crate::sigma_moe::expert;
use crate::xl_pos::position_keys;
use crate::{OpError, Tensor, dot, sigmoid};

/// How values are produced and outputs projected.
#[derive(Debug, Clone, Copy)]
pub enum ValueOutput<'a> {
    /// SwitchHead: `v [H*E, D, dh]`, `o [H*E, dh, D]`, routers `sel_v`, `sel_o` `[H*E, D]`.
    Experts {
        v: &'a Tensor,
        o: &'a Tensor,
        sel_v: &'a Tensor,
        sel_o: &'a Tensor,
        k: usize,
    },
    /// E = 1: `v [H*dh, D]`, `o [D, H*dh]`, per-head sigmoid output gate `sel_o [H, D]`.
    Gated {
        v: &'a Tensor,
        o: &'a Tensor,
        sel_o: &'a Tensor,
    },
    /// Dense baseline: `v [H*dh, D]`, `o [D, H*dh]`.
    Dense { v: &'a Tensor, o: &'a Tensor },
}

/// Positional encoding of the layer.
#[derive(Debug, Clone, Copy)]
pub enum Positions<'a> {
    /// Rotary: keys at 0..Tk, queries at `Tk-T ..`.
    Rope(&'a Rope),
    /// Transformer-XL relative term with `pos_to_pk [H*dh, D]`.
    Xl { pos_to_pk: &'a Tensor },
}

/// Weights and attributes of one attention layer.
#[derive(Debug, Clone, Copy)]
pub struct AttentionLayer<'a> {
    pub heads: usize,
    pub d_head: usize,
    pub q: &'a Tensor,
    pub k: &'a Tensor,
    pub value_output: ValueOutput<'a>,
    pub positions: Positions<'a>,
}

/// Output of one attention layer.
#[derive(Debug, Clone)]
pub struct AttentionOutput {
    /// `[T, D]`.
    pub y: Tensor,
    /// Value-router decisions over the Tk key rows (SwitchHead only).
    pub sel_v: Option<Routing>,
    /// Output-router decisions over the T query rows (SwitchHead only).
    pub sel_o: Option<Routing>,
}

/// Runs the layer on one sequence.
pub fn moe_attention(
    layer: &AttentionLayer<'_>,
    xq: &Tensor,
    xkv: &Tensor,
) -> Result<AttentionOutput, OpError> {
    let scale = (layer.d_head as f64).powf(-0.25);
    let mut q = scaled(linear(xq, layer.q, None)?, scale);
    let mut k = scaled(linear(xkv, layer.k, None)?, scale);
    let offset = xkv
        .rows()
        .checked_sub(xq.rows())
        .ok_or_else(|| too_few_keys(xq, xkv))?;
    let (v, sel_v) = values(layer, xkv)?;
    let r = match layer.positions {
        Positions::Rope(rope) => {
            rotate(&mut q, rope, layer.heads, layer.d_head, offset);
            rotate(&mut k, rope, layer.heads, layer.d_head, 0);
            causal_attention(&q, &k, &v, layer.heads, layer.d_head, None)?
        }
        Positions::Xl { pos_to_pk } => {
            let lo = -((xq.rows() - 1 + offset) as i64);
            let keys = position_keys(pos_to_pk, scale, lo, 0)?;
            let rel = RelativeKeys { keys: &keys, lo };
            causal_attention(&q, &k, &v, layer.heads, layer.d_head, Some(rel))?
        }
    };
    let (y, sel_o) = outputs(layer, xq, r)?;
    Ok(AttentionOutput { y, sel_v, sel_o })
}

fn values(layer: &AttentionLayer<'_>, xkv: &Tensor) -> Result<(Tensor, Option<Routing>), OpError> {
    match layer.value_output {
        ValueOutput::Experts { v, sel_v, k, .. } => {
            let routing = sigmoid_topk(xkv, sel_v, layer.heads, k)?;
            let vals = expert_values(xkv, v, &routing, layer.d_head)?;
            Ok((vals, Some(routing)))
        }
        ValueOutput::Gated { v, .. } | ValueOutput::Dense { v, .. } => {
            Ok((linear(xkv, v, None)?, None))
        }
    }
}

/// `V[t, h] = sum_j w[t,h,j] * (x[t] @ Wv[id[t,h,j]])`, Wv `[H*E, D, dh]`.
fn expert_values(x: &Tensor, wv: &Tensor, routing: &Routing, dh: usize) -> Result<Tensor, OpError> {
    let d = x.last_dim();
    wv.expect_shape(
        "moe_attention v",
        &[wv.shape().first().copied().unwrap_or(0), d, dh],
    )?;
    let mut out = Vec::with_capacity(x.rows() * routing.groups * dh);
    for t in 0..x.rows() {
        for h in 0..routing.groups {
            let mut acc = vec![0f64; dh];
            for (id, gate) in routing.selected(t, h) {
                let y = matmul_rows(x.row(t), expert(wv, id, d * dh), d, dh);
                acc.iter_mut()
                    .zip(y)
                    .for_each(|(a, v)| *a += gate as f64 * v);
            }
            out.extend(acc.iter().map(|&v| v as f32));
        }
    }
    Tensor::new(vec![x.rows(), routing.groups * dh], out)
}

fn outputs(
    layer: &AttentionLayer<'_>,
    xq: &Tensor,
    r: Tensor,
) -> Result<(Tensor, Option<Routing>), OpError> {
    match layer.value_output {
        ValueOutput::Experts { o, sel_o, k, .. } => {
            let routing = sigmoid_topk(xq, sel_o, layer.heads, k)?;
            let y = expert_outputs(&r, o, &routing, layer.d_head)?;
            Ok((y, Some(routing)))
        }
        ValueOutput::Gated { o, sel_o, .. } => {
            let gated = head_gate(xq, sel_o, r, layer.d_head)?;
            Ok((linear(&gated, o, None)?, None))
        }
        ValueOutput::Dense { o, .. } => Ok((linear(&r, o, None)?, None)),
    }
}

/// `y[t] = sum_h sum_j w[t,h,j] * (R[t,h] @ Wo[id[t,h,j]])`, Wo `[H*E, dh, D]`.
fn expert_outputs(
    r: &Tensor,
    wo: &Tensor,
    routing: &Routing,
    dh: usize,
) -> Result<Tensor, OpError> {
    let d = wo.last_dim();
    wo.expect_shape(
        "moe_attention o",
        &[wo.shape().first().copied().unwrap_or(0), dh, d],
    )?;
    let mut out = Vec::with_capacity(r.rows() * d);
    for t in 0..r.rows() {
        let mut acc = vec![0f64; d];
        for h in 0..routing.groups {
            let rh = &r.row(t)[h * dh..(h + 1) * dh];
            for (id, gate) in routing.selected(t, h) {
                let y = matmul_rows(rh, expert(wo, id, dh * d), dh, d);
                acc.iter_mut()
                    .zip(y)
                    .for_each(|(a, v)| *a += gate as f64 * v);
            }
        }
        out.extend(acc.iter().map(|&v| v as f32));
    }
    Tensor::new(vec![r.rows(), d], out)
}

/// E = 1: `R_h *= sigmoid(xq @ So^T)_h`.
fn head_gate(xq: &Tensor, sel_o: &Tensor, mut r: Tensor, dh: usize) -> Result<Tensor, OpError> {
    let heads = r.last_dim() / dh;
    sel_o.expect_shape("gated attention sel_o", &[heads, xq.last_dim()])?;
    for t in 0..r.rows() {
        let gates: Vec<f64> = (0..heads)
            .map(|h| sigmoid(dot(xq.row(t), sel_o.row(h)) as f32 as f64))
            .collect();
        let row = &mut r.data_mut()[t * heads * dh..(t + 1) * heads * dh];
        for (c, v) in row.iter_mut().enumerate() {
            *v = (*v as f64 * gates[c / dh]) as f32;
        }
    }
    Ok(r)
}

fn scaled(mut t: Tensor, s: f64) -> Tensor {
    t.data_mut()
        .iter_mut()
        .for_each(|v| *v = (*v as f64 * s) as f32);
    t
}

fn rotate(x: &mut Tensor, rope: &Rope, heads: usize, dh: usize, first_pos: usize) {
    let rows = x.rows();
    for t in 0..rows {
        let row = &mut x.data_mut()[t * heads * dh..(t + 1) * heads * dh];
        for head in row.chunks_mut(dh) {
            rope.apply(head, first_pos + t);
        }
    }
}

fn too_few_keys(xq: &Tensor, xkv: &Tensor) -> OpError {
    OpError::Shape {
        what: "moe_attention xkv".into(),
        expected: format!("at least the {} query rows", xq.rows()),
        got: format!("{} rows", xkv.rows()),
    }
}

/// q, k, `sel_v` and `sel_o` (`None` where the variant has no such rows) from the stacked
/// weights of a merged layer: `[qkr]` when [`Merge::All`], `[qo, kv]` when
/// [`Merge::Sides`] (row blocks as [`MergedBlocks`] says).
pub fn split_merged(
    weights: &[&Tensor],
    merge: Merge,
    mb: MergedBlocks,
) -> Result<[Option<Tensor>; 4], OpError> {
    match (merge, weights) {
        (Merge::All, [qkr]) => {
            let [q, k, v, o] = split_rows(qkr, "qkr", &[mb.q, mb.k, mb.sel_v, mb.sel_o])?
                .try_into()
                .map_err(|_| bad_merge(merge))?;
            Ok([q, k, v, o])
        }
        (Merge::Sides, [qo, kv]) => {
            let [q, o] = split_rows(qo, "qo", &[mb.q, mb.sel_o])?
                .try_into()
                .map_err(|_| bad_merge(merge))?;
            let [k, v] = split_rows(kv, "kv", &[mb.k, mb.sel_v])?
                .try_into()
                .map_err(|_| bad_merge(merge))?;
            Ok([q, k, v, o])
        }
        _ => Err(bad_merge(merge)),
    }
}

fn bad_merge(merge: Merge) -> OpError {
    OpError::Shape {
        what: "moe_attention merged weights".into(),
        expected: format!("the stacked weights of merge `{}`", merge.name()),
        got: "another count".into(),
    }
}

/// Consecutive row blocks of `[sum rows, D]` `w` (`None` for an empty block).
fn split_rows(w: &Tensor, name: &str, rows: &[usize]) -> Result<Vec<Option<Tensor>>, OpError> {
    let d = w.last_dim();
    w.expect_shape(&format!("moe_attention {name}"), &[rows.iter().sum(), d])?;
    let mut at = 0;
    rows.iter()
        .map(|&n| {
            let data = w.data()[at * d..(at + n) * d].to_vec();
            at += n;
            (n > 0).then(|| Tensor::new(vec![n, d], data)).transpose()
        })
        .collect()
}
