//! `MoEAttention` -> standard ops; ExpertsVO's experts in either [`ExpertForm`].
//!
//! `q = (xq @ Wq^T) s`, `k = (xkv @ Wk^T) s`, `s = dh^-0.25`, split into heads `[B, H, L, dh]`;
//! merged projections are one MatMul with `qkr` whose column blocks (`Slice`) are q, k and
//! the router logits.
//! Values: ExpertsVO, dense form, computes all E experts' values `[B, Tk, H, E, dh]` and sums
//! them over E weighted by the dense gate of the value router (run on the key/value side);
//! gather form gathers each token's k selected `Wv` matrices `[B, Tk, H, k, D, dh]`, one
//! vector-matrix product per slot, gate-weighted sum over k. Gated/Dense use one projection. Positions: RoPE on q (positions Tk-T..Tk-1) and k (0..Tk-1), or the XL term
//! added to the logits. Causal mask with -inf, Softmax, `R = P V`. Outputs: ExpertsVO, dense form, weights
//! `R[b,t,h]` by the dense output gate per expert and does one MatMul with Wo as
//! `[H*E*dh, D]` (a sum over heads and experts); gather form multiplies `R[b,t,h]` by each
//! token's k selected `Wo` matrices `[B, T, H, k, dh, D]` and sums the gated products over
//! heads and slots; Gated scales each head by
//! `sigmoid(xq @ So^T)`; Dense projects with Wo^T.
//!
//! KV-cache form ([`moe_attention_kv`], RoPE only): two more inputs, the past key and value
//! `[B, H, P, dh]`; the current keys (scaled, RoPE at positions P..P+T-1) and values (after
//! the expert mixture) are concatenated after them on axis 2, giving the present key and
//! value, which attention then uses; queries take positions P..P+T-1 and the causal mask lets
//! query r see keys c <= P + r.

use switchhead_ops::op::{AttentionVariant, Merge, MoeAttentionAttrs, PosEncoding};
use switchhead_ops::rope::Rope;

use super::common::{bin, dim, matmul_t, reshape, slice, transpose, unsqueeze};
use super::positions::{Lengths, causal_hidden, rope, xl_term};
use super::router::{Routing, dense_gates, logits, top_gates};
use super::{ExpertForm, OpContext};
use crate::onnx::builder::{Builder, attr_i, tensor_f32};
use crate::onnx::emit::EmitError;

/// Inputs as [`switchhead_ops::op::Op::MoEAttention`] lists them.
pub fn moe_attention(
    b: &mut Builder,
    a: &MoeAttentionAttrs,
    i: &[&str],
    ctx: OpContext,
) -> Result<String, EmitError> {
    Ok(attention(b, a, i, None, ctx)?.0)
}

/// The KV-cache form (RoPE only): inputs as [`moe_attention`] plus the cached keys and
/// values `[B, H, P, dh]` (P may be 0); returns `(y, present_key, present_value)`, the
/// presents `[B, H, P + T, dh]` = concat(past, current) on axis 2. Keys are cached after
/// scaling and RoPE at their absolute positions, values after the expert mixture. Queries
/// and new keys take positions `P .. P+T-1`; query r sees keys `c <= P + r`.
pub fn moe_attention_kv(
    b: &mut Builder,
    a: &MoeAttentionAttrs,
    i: &[&str],
    (past_k, past_v): (&str, &str),
    ctx: OpContext,
) -> Result<(String, String, String), EmitError> {
    if a.pos == PosEncoding::Xl {
        let reason = "a KV cache needs RoPE (XL models carry memory.{i} instead)".into();
        return Err(unsupported(reason));
    }
    let (y, present) = attention(b, a, i, Some((past_k, past_v)), ctx)?;
    let (k, v) = present.ok_or_else(|| unsupported("no KV cache built".into()))?;
    Ok((y, k, v))
}

/// Shared body; with `past`, also returns the present key and value.
#[allow(clippy::type_complexity)]
fn attention(
    b: &mut Builder,
    a: &MoeAttentionAttrs,
    i: &[&str],
    past: Option<(&str, &str)>,
    ctx: OpContext,
) -> Result<(String, Option<(String, String)>), EmitError> {
    let (h, dh) = (a.heads as i64, a.d_head as i64);
    let (xq, xkv) = (i[0], i[1]);
    let s = b.scalar_f32((a.d_head as f64).powf(-0.25) as f32);
    let proj = project(b, a, i);
    let q = bin(b, "Mul", &proj.q, &s);
    let q = split_heads(b, &q, h, dh);
    let k = bin(b, "Mul", &proj.k, &s);
    let k = split_heads(b, &k, h, dh);
    let (len, past_len) = match past {
        None => (lengths(b, xq, xkv), None),
        Some((pk, _)) => {
            let (len, p) = lengths_kv(b, xq, pk);
            (len, Some(p))
        }
    };
    let v = values(b, a, (i, &proj), ctx.experts);
    let (q, k, rel) = match a.pos {
        PosEncoding::Rope {
            rotate_fraction,
            base,
        } => {
            let n_rot = Rope::new(a.d_head, rotate_fraction, base)
                .map_err(|e| unsupported(e.to_string()))?
                .n_rot();
            if let Some(p) = &past_len {
                // Queries and new keys both sit at P .. P+T-1.
                let pos = b.op("Range", &[p, &len.tk, &len.one], vec![]);
                let q = rope(b, &q, &pos, n_rot, a.d_head, base);
                let k = rope(b, &k, &pos, n_rot, a.d_head, base);
                (q, k, None)
            } else {
                let off = bin(b, "Sub", &len.tk, &len.t);
                let qpos = b.op("Range", &[&off, &len.tk, &len.one], vec![]);
                let kpos = b.op("Range", &[&len.zero, &len.tk, &len.one], vec![]);
                let q = rope(b, &q, &qpos, n_rot, a.d_head, base);
                let k = rope(b, &k, &kpos, n_rot, a.d_head, base);
                (q, k, None)
            }
        }
        PosEncoding::Xl => {
            let wpk = *i
                .last()
                .ok_or_else(|| unsupported("no pos_to_pk input".into()))?;
            if ctx.d_model == 0 || !ctx.d_model.is_multiple_of(2) {
                let d = ctx.d_model;
                return Err(unsupported(format!(
                    "XL needs a known, even d_model, got {d}"
                )));
            }
            let rel = xl_term(b, &q, wpk, &s, &len, (h, dh), ctx.d_model);
            (q, k, Some(rel))
        }
    };
    let (k, v, present) = match past {
        None => (k, v, None),
        Some((pk, pv)) => {
            let k = b.op("Concat", &[pk, &k], vec![attr_i("axis", 2)]);
            let v = b.op("Concat", &[pv, &v], vec![attr_i("axis", 2)]);
            (k.clone(), v.clone(), Some((k, v)))
        }
    };
    let kt = transpose(b, &k, &[0, 1, 3, 2]);
    let mut logits = bin(b, "MatMul", &q, &kt);
    if let Some(rel) = rel {
        logits = bin(b, "Add", &logits, &rel);
    }
    if a.causal {
        let hidden = causal_hidden(b, &len);
        let neg = b.constant(tensor_f32(&[f32::NEG_INFINITY], &[]));
        logits = b.op("Where", &[&hidden, &neg, &logits], vec![]);
    }
    let p = b.op("Softmax", &[&logits], vec![attr_i("axis", -1)]);
    let r = bin(b, "MatMul", &p, &v);
    let r = transpose(b, &r, &[0, 2, 1, 3]);
    Ok((outputs(b, a, (i, &proj), &r, ctx.experts), present))
}

fn unsupported(reason: String) -> EmitError {
    EmitError::Unsupported {
        op: "MoEAttention".into(),
        reason,
    }
}

fn lengths(b: &mut Builder, xq: &str, xkv: &str) -> Lengths {
    let t = dim(b, xq, 1);
    let tk = dim(b, xkv, 1);
    let zero = b.scalar_i64(0);
    let one = b.scalar_i64(1);
    Lengths { t, tk, zero, one }
}

/// Lengths with a KV cache: T from xq, P from the past key `[B, H, P, dh]`, Tk = P + T;
/// also returns P.
fn lengths_kv(b: &mut Builder, xq: &str, past_k: &str) -> (Lengths, String) {
    let t = dim(b, xq, 1);
    let p = dim(b, past_k, 2);
    let tk = bin(b, "Add", &p, &t);
    let zero = b.scalar_i64(0);
    let one = b.scalar_i64(1);
    (Lengths { t, tk, zero, one }, p)
}

/// `[B, L, H*dh]` -> `[B, H, L, dh]`.
fn split_heads(b: &mut Builder, x: &str, h: i64, dh: i64) -> String {
    let x = reshape(b, x, &[0, 0, h, dh]);
    transpose(b, &x, &[0, 2, 1, 3])
}

/// The routing of an ExpertsVO layer's value or output experts.
fn routing(a: &MoeAttentionAttrs) -> Routing {
    Routing {
        groups: a.heads as i64,
        experts: a.experts as i64,
        k: a.k as i64,
    }
}

/// q and k (unscaled) and the router logits, each `[B, L, rows]`.
struct Projected {
    q: String,
    k: String,
    sel_v: String,
    sel_o: String,
}

/// One MatMul per weight, or (merged) one MatMul with `qkr` (or one per side with `qo` and
/// `kv`) whose result is cut into its column blocks by `Slice`. Absent routers are left as
/// empty names.
fn project(b: &mut Builder, a: &MoeAttentionAttrs, i: &[&str]) -> Projected {
    let (xq, xkv, s) = (i[0], i[1], a.slots());
    let blocks = a.merged_blocks();
    let cut = |b: &mut Builder, all: &str, at: usize, rows: usize| match rows {
        0 => String::new(),
        _ => slice(b, all, -1, at as i64, (at + rows) as i64),
    };
    match a.merged {
        Merge::All => {
            let all = matmul_t(b, xq, i[s.q]);
            let (q0, k0, v0, o0) = blocks.starts();
            return Projected {
                q: cut(b, &all, q0, blocks.q),
                k: cut(b, &all, k0, blocks.k),
                sel_v: cut(b, &all, v0, blocks.sel_v),
                sel_o: cut(b, &all, o0, blocks.sel_o),
            };
        }
        Merge::Sides => {
            let query = matmul_t(b, xq, i[s.q]);
            let keys = matmul_t(b, xkv, i[s.k]);
            return Projected {
                q: cut(b, &query, 0, blocks.q),
                sel_o: cut(b, &query, blocks.q, blocks.sel_o),
                k: cut(b, &keys, 0, blocks.k),
                sel_v: cut(b, &keys, blocks.k, blocks.sel_v),
            };
        }
        Merge::None => {}
    }
    let mut router =
        |x: &str, slot: Option<usize>| slot.map_or(String::new(), |j| logits(b, x, i[j]));
    let (sel_v, sel_o) = (router(xkv, s.sel_v), router(xq, s.sel_o));
    Projected {
        q: matmul_t(b, xq, i[s.q]),
        k: matmul_t(b, xkv, i[s.k]),
        sel_v,
        sel_o,
    }
}

/// Values `[B, H, Tk, dh]`.
fn values(
    b: &mut Builder,
    a: &MoeAttentionAttrs,
    (i, p): (&[&str], &Projected),
    form: ExpertForm,
) -> String {
    let (h, e, dh) = (a.heads as i64, a.experts as i64, a.d_head as i64);
    let (xkv, wv) = (i[1], i[a.slots().v]);
    if a.variant != AttentionVariant::ExpertsVO {
        let v = matmul_t(b, xkv, wv);
        return split_heads(b, &v, h, dh);
    }
    let v = match form {
        ExpertForm::Dense => {
            let gate = dense_gates(b, &p.sel_v, routing(a));
            let gate = unsqueeze(b, &gate, &[4]);
            let w = transpose(b, wv, &[1, 0, 2]);
            let w = reshape(b, &w, &[0, h * e * dh]);
            let all = bin(b, "MatMul", xkv, &w);
            let all = reshape(b, &all, &[0, 0, h, e, dh]);
            let weighted = bin(b, "Mul", &all, &gate);
            let axes = b.ints(&[3]);
            b.op(
                "ReduceSum",
                &[&weighted, &axes],
                vec![attr_i("keepdims", 0)],
            )
        }
        ExpertForm::Gather => {
            // x [B,Tk,1,1,1,D] @ Wv[ids] [B,Tk,H,k,D,dh] -> [B,Tk,H,k,1,dh]
            let x = unsqueeze(b, xkv, &[2, 3, 4]);
            gathered_sum(b, &x, (&p.sel_v, wv), routing(a), &[3, 4])
        }
    };
    transpose(b, &v, &[0, 2, 1, 3])
}

/// Gather form: `sum_j gate_j * (x @ W[id_j])` reduced over `axes` (the slot axis 3 and the
/// row axis 4, plus heads for the output). `(logits, w)`: the router's logits and the
/// stacked expert weight `[H*E, rows, cols]`; `x` is broadcast against the gathered
/// `[B, L, H, k, rows, cols]`.
fn gathered_sum(
    b: &mut Builder,
    x: &str,
    (logits, w): (&str, &str),
    r: Routing,
    axes: &[i64],
) -> String {
    let (gate, ids) = top_gates(b, logits, r);
    let wg = b.op("Gather", &[w, &ids], vec![attr_i("axis", 0)]);
    let y = bin(b, "MatMul", x, &wg);
    let gate = unsqueeze(b, &gate, &[4, 5]);
    let y = bin(b, "Mul", &y, &gate);
    let axes = b.ints(axes);
    b.op("ReduceSum", &[&y, &axes], vec![attr_i("keepdims", 0)])
}

/// Output projection of R `[B, T, H, dh]` -> `[B, T, D]`.
fn outputs(
    b: &mut Builder,
    a: &MoeAttentionAttrs,
    (i, p): (&[&str], &Projected),
    r: &str,
    form: ExpertForm,
) -> String {
    let (h, e, dh) = (a.heads as i64, a.experts as i64, a.d_head as i64);
    let wo = i[a.slots().o];
    match (a.variant, form) {
        (AttentionVariant::ExpertsVO, ExpertForm::Dense) => {
            let gate = dense_gates(b, &p.sel_o, routing(a));
            let gate = unsqueeze(b, &gate, &[4]);
            let r = unsqueeze(b, r, &[3]);
            let rw = bin(b, "Mul", &r, &gate);
            let rw = reshape(b, &rw, &[0, 0, h * e * dh]);
            let wo = reshape(b, wo, &[h * e * dh, -1]);
            bin(b, "MatMul", &rw, &wo)
        }
        (AttentionVariant::ExpertsVO, ExpertForm::Gather) => {
            // R [B,T,H,1,1,dh] @ Wo[ids] [B,T,H,k,dh,D] -> [B,T,H,k,1,D], summed over H, k.
            let r = unsqueeze(b, r, &[3, 4]);
            gathered_sum(b, &r, (&p.sel_o, wo), routing(a), &[2, 3, 4])
        }
        (AttentionVariant::Gated, _) => {
            let g = b.op("Sigmoid", &[&p.sel_o], vec![]);
            let g = unsqueeze(b, &g, &[3]);
            let r = bin(b, "Mul", r, &g);
            let r = reshape(b, &r, &[0, 0, h * dh]);
            matmul_t(b, &r, wo)
        }
        (AttentionVariant::Dense, _) => {
            let r = reshape(b, r, &[0, 0, h * dh]);
            matmul_t(b, &r, wo)
        }
    }
}
