//! `MoEAttention` on the device (SPEC.md sections 1-2): the input projections (separate, or
//! one merged product cut into column blocks), the value router and the grouped V experts,
//! RoPE or the XL position keys (kept per node between passes), flash attention over the
//! pass's keys or the KV cache (appended in place), the output router and the grouped O
//! experts with the gate and the reduction over heads fused.

use std::sync::Arc;

use switchhead_kernels::gpu::Device;
use switchhead_kernels::gpu::launch::{self as l, AttnDims, Cols, Epilogue, Rope};
use switchhead_kernels::gpu::launch::{ExpertInput, ExpertOutput};
use switchhead_ops::op::{AttentionVariant, Merge, MoeAttentionAttrs, PosEncoding};

use super::exec::{Pass, err};
use super::moe::route;
use super::tensor::{Tensor, product, project, w, zeros};
use crate::native::Step;

/// q and k (scaled by dh^-0.25) and the routers' logits, each a contiguous buffer.
struct Projected<B> {
    q: Tensor<B>,
    k: Tensor<B>,
    sel_v: Option<Tensor<B>>,
    sel_o: Option<Tensor<B>>,
}

/// Sizes of one call.
#[derive(Debug, Clone, Copy)]
struct Dims {
    batch: usize,
    t: usize,
    tk: usize,
    d: usize,
    hd: usize,
}

pub(crate) fn run<D: Device>(
    pass: &mut Pass<'_, '_, D>,
    index: usize,
    s: &Step,
    a: &MoeAttentionAttrs,
) -> Result<Tensor<D::Buffer>, String> {
    let (xq, xkv) = (
        pass.act(s.inputs[0])?.clone(),
        pass.act(s.inputs[1])?.clone(),
    );
    let (&[batch, t, d], &[_, tk, _]) = (&xq.shape[..], &xkv.shape[..]) else {
        return Err(format!(
            "rank-3 xq/xkv expected, got {:?}, {:?}",
            xq.shape, xkv.shape
        ));
    };
    let dims = Dims {
        batch,
        t,
        tk,
        d,
        hd: a.heads * a.d_head,
    };
    let scale = (a.d_head as f64).powf(-0.25);
    let p = project_all(pass, s, a, (&xq, &xkv), dims, scale as f32)?;
    let v = values(pass, s, a, &xkv, p.sel_v.as_ref(), dims)?;
    let r = attend(pass, index, s, a, &p, v, dims, scale)?;
    let y = outputs(pass, s, a, &r, p.sel_o.as_ref(), dims)?;
    pass.layer += 1;
    Ok(y)
}

/// The projections of xq (`rows_q` rows) and xkv by the node's merge mode.
fn project_all<D: Device>(
    pass: &Pass<'_, '_, D>,
    s: &Step,
    a: &MoeAttentionAttrs,
    (xq, xkv): (&Tensor<D::Buffer>, &Tensor<D::Buffer>),
    dims: Dims,
    scale: f32,
) -> Result<Projected<D::Buffer>, String> {
    let dev = &pass.m.dev;
    let slots = a.slots();
    let blocks = a.merged_blocks();
    let weight = |i: usize| pass.weight(s.inputs[i]);
    let (nq, nk) = (dims.batch * dims.t, dims.batch * dims.tk);
    let cut = |src: &Tensor<D::Buffer>, col: usize, width: usize, rows: usize, sc: f32| {
        (width > 0)
            .then(|| column_block(dev, src, (col, width), rows, sc))
            .transpose()
    };
    match a.merged {
        Merge::None => {
            let q = project(dev, xq, weight(slots.q)?, scale).map_err(err)?;
            let k = project(dev, xkv, weight(slots.k)?, scale).map_err(err)?;
            let router = |slot: Option<usize>, x: &Tensor<D::Buffer>| {
                slot.map(|i| project(dev, x, weight(i)?, 1.0).map_err(err))
                    .transpose()
            };
            let sel_v = router(slots.sel_v.filter(|_| blocks.sel_v > 0), xkv)?;
            let sel_o = router(slots.sel_o.filter(|_| blocks.sel_o > 0), xq)?;
            Ok(Projected { q, k, sel_v, sel_o })
        }
        Merge::All => {
            let all = project(dev, xq, weight(slots.q)?, 1.0).map_err(err)?;
            let (q0, k0, v0, o0) = blocks.starts();
            Ok(Projected {
                q: cut(&all, q0, blocks.q, nq, scale)?.ok_or("no q block")?,
                k: cut(&all, k0, blocks.k, nk, scale)?.ok_or("no k block")?,
                sel_v: cut(&all, v0, blocks.sel_v, nk, 1.0)?,
                sel_o: cut(&all, o0, blocks.sel_o, nq, 1.0)?,
            })
        }
        Merge::Sides => {
            let qo = project(dev, xq, weight(slots.q)?, 1.0).map_err(err)?;
            let kv = project(dev, xkv, weight(slots.k)?, 1.0).map_err(err)?;
            Ok(Projected {
                q: cut(&qo, 0, blocks.q, nq, scale)?.ok_or("no q block")?,
                sel_o: cut(&qo, blocks.q, blocks.sel_o, nq, 1.0)?,
                k: cut(&kv, 0, blocks.k, nk, scale)?.ok_or("no k block")?,
                sel_v: cut(&kv, blocks.k, blocks.sel_v, nk, 1.0)?,
            })
        }
    }
}

/// Columns `col..col+width` of `src` (`rows` rows), times `scale`, as a new tensor.
fn column_block<D: Device>(
    dev: &D,
    src: &Tensor<D::Buffer>,
    (col, width): (usize, usize),
    rows: usize,
    scale: f32,
) -> Result<Tensor<D::Buffer>, String> {
    let y = zeros(dev, vec![rows, width]).map_err(err)?;
    let from = Cols {
        buf: &*src.buf,
        ld: src.last(),
        col,
    };
    let to = Cols {
        buf: &*y.buf,
        ld: width,
        col: 0,
    };
    l::copy_cols(dev, from, to, (rows, width), scale).map_err(err)?;
    Ok(y)
}

/// Values `[batch*tk, H*dh]`: the routed V experts, or one projection.
fn values<D: Device>(
    pass: &mut Pass<'_, '_, D>,
    s: &Step,
    a: &MoeAttentionAttrs,
    xkv: &Tensor<D::Buffer>,
    sel_v: Option<&Tensor<D::Buffer>>,
    dims: Dims,
) -> Result<Tensor<D::Buffer>, String> {
    let wv = pass.weight(s.inputs[a.slots().v])?;
    let (Some(logits), AttentionVariant::ExpertsVO) = (sel_v, a.variant) else {
        return project(&pass.m.dev, xkv, wv, 1.0).map_err(err);
    };
    let n = dims.batch * dims.tk;
    let r = route(pass, &logits.buf, n, (a.heads, a.experts, a.k), "v")?;
    let dev = &pass.m.dev;
    let v = zeros(dev, vec![n, dims.hd]).map_err(err)?;
    let input = ExpertInput {
        x: &*xkv.buf,
        row_stride: dims.d,
        group_stride: 0,
        by_slot: true,
    };
    let out = ExpertOutput {
        y: &*v.buf,
        row_stride: dims.hd,
        group_stride: a.d_head,
        epilogue: Epilogue::GatedAdd,
    };
    l::expert_gemm(dev, input, (w(wv), dims.d, a.d_head), &r, out).map_err(err)?;
    Ok(v)
}

/// Positions, then attention: R `[batch*t, H*dh]`.
#[allow(clippy::too_many_arguments)]
fn attend<D: Device>(
    pass: &mut Pass<'_, '_, D>,
    index: usize,
    s: &Step,
    a: &MoeAttentionAttrs,
    p: &Projected<D::Buffer>,
    v: Tensor<D::Buffer>,
    dims: Dims,
    scale: f64,
) -> Result<Tensor<D::Buffer>, String> {
    let dev = &pass.m.dev;
    let r = zeros(dev, vec![dims.batch * dims.t, dims.hd]).map_err(err)?;
    let base = AttnDims {
        batch: dims.batch,
        t: dims.t,
        tk: dims.tk,
        kv_rows: dims.tk,
        heads: a.heads,
        dh: a.d_head,
    };
    let qkv = (&*p.q.buf, &*p.k.buf, &*v.buf);
    match a.pos {
        PosEncoding::Xl => {
            let kp = position_keys(pass, index, s, a, dims, scale)?;
            l::flash_attention(dev, qkv, Some(&*kp), &r.buf, base).map_err(err)?;
        }
        PosEncoding::Rope {
            rotate_fraction,
            base: theta,
        } => {
            let rope = Rope {
                n_rot: (rotate_fraction * a.d_head as f64) as usize,
                base: theta,
            };
            let past = pass.io.kv.as_ref().map_or(0, |kv| kv.len);
            let offset = past + dims.tk - dims.t;
            let heads = (a.heads, a.d_head);
            let q_rows = (dims.batch * dims.t, heads.0, heads.1);
            l::rope(dev, &p.q.buf, q_rows, rope, (dims.t, offset)).map_err(err)?;
            let k_rows = (dims.batch * dims.tk, heads.0, heads.1);
            l::rope(dev, &p.k.buf, k_rows, rope, (dims.tk, past)).map_err(err)?;
            match pass.io.kv.as_deref_mut() {
                Some(kv) => kv.attend(dev, pass.layer, qkv, &r.buf, base).map_err(err)?,
                None => l::flash_attention(dev, qkv, None, &r.buf, base).map_err(err)?,
            }
        }
    }
    Ok(r)
}

/// The node's XL position keys `[tk, H*dh]` for relative positions -(tk-1)..0: kept from
/// the last pass with the same key count, else computed (sinusoid, then one product).
fn position_keys<D: Device>(
    pass: &Pass<'_, '_, D>,
    index: usize,
    s: &Step,
    a: &MoeAttentionAttrs,
    dims: Dims,
    scale: f64,
) -> Result<Arc<D::Buffer>, String> {
    if let Some(kept) = pass.m.kept_position_keys(index, dims.tk) {
        return Ok(kept);
    }
    let dev = &pass.m.dev;
    let slot = a
        .slots()
        .pos_to_pk
        .ok_or("an XL attention without pos_to_pk")?;
    let wpk = pass.weight(s.inputs[slot])?;
    let pe = zeros(dev, vec![dims.tk, dims.d]).map_err(err)?;
    let lo = -(dims.tk as i64 - 1);
    l::xl_sinusoid(dev, &pe.buf, (dims.tk, dims.d), lo, scale).map_err(err)?;
    let kp = zeros(dev, vec![dims.tk, dims.hd]).map_err(err)?;
    let x = (&*pe.buf, dims.tk, dims.d);
    product(dev, x, wpk, (&*kp.buf, dims.hd, 0), 1.0).map_err(err)?;
    pass.m
        .keep_position_keys(index, dims.tk, Arc::clone(&kp.buf));
    Ok(kp.buf)
}

/// The output side: routed O experts, the gated heads' projection or the dense one.
fn outputs<D: Device>(
    pass: &mut Pass<'_, '_, D>,
    s: &Step,
    a: &MoeAttentionAttrs,
    r: &Tensor<D::Buffer>,
    sel_o: Option<&Tensor<D::Buffer>>,
    dims: Dims,
) -> Result<Tensor<D::Buffer>, String> {
    let wo = pass.weight(s.inputs[a.slots().o])?;
    let n = dims.batch * dims.t;
    let shape = vec![dims.batch, dims.t, dims.d];
    match (a.variant, sel_o) {
        (AttentionVariant::ExpertsVO, Some(logits)) => {
            let routed = route(pass, &logits.buf, n, (a.heads, a.experts, a.k), "o")?;
            let dev = &pass.m.dev;
            let y = zeros(dev, shape).map_err(err)?;
            let input = ExpertInput {
                x: &*r.buf,
                row_stride: dims.hd,
                group_stride: a.d_head,
                by_slot: true,
            };
            let out = ExpertOutput {
                y: &*y.buf,
                row_stride: dims.d,
                group_stride: 0,
                epilogue: Epilogue::GatedAdd,
            };
            l::expert_gemm(dev, input, (w(wo), a.d_head, dims.d), &routed, out).map_err(err)?;
            Ok(y)
        }
        (variant, gate) => {
            let dev = &pass.m.dev;
            if let (AttentionVariant::Gated, Some(logits)) = (variant, gate) {
                let g = (n, a.heads, a.d_head);
                l::gate_heads(dev, &r.buf, &logits.buf, g).map_err(err)?;
            }
            let y = zeros(dev, shape).map_err(err)?;
            product(dev, (&*r.buf, n, dims.hd), wo, (&*y.buf, dims.d, 0), 1.0).map_err(err)?;
            Ok(y)
        }
    }
}
