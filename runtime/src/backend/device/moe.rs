//! Routing on the device and σ-MoE: the router product, sigmoid top-k with the dispatch
//! lists built on the device, and the two grouped expert products (hidden rows stored relu'd
//! in sorted order, then the gated sum back into each token's row).

use switchhead_kernels::gpu::launch::{self as l, Epilogue, ExpertInput, ExpertOutput, Routed};
use switchhead_kernels::gpu::{Device, download_i32};
use switchhead_ops::op::SigmaMoeAttrs;

use super::exec::{Pass, err};
use super::model::RouteTrace;
use super::tensor::{Tensor, project, w, zeros};
use crate::native::Step;

/// Routes `n` rows of `logits` (`[n, groups*experts]`) and, when the pass traces, records the
/// chosen expert ids under `site` (`ffn`: the layer of the attention before it).
pub(crate) fn route<D: Device>(
    pass: &mut Pass<'_, '_, D>,
    logits: &D::Buffer,
    n: usize,
    (groups, experts, k): (usize, usize, usize),
    site: &'static str,
) -> Result<Routed<D::Buffer>, String> {
    let dev = &pass.m.dev;
    let r = l::route(dev, logits, n, (groups, experts, k)).map_err(err)?;
    if let Some(trace) = pass.io.trace.as_deref_mut() {
        let idx = download_i32(dev, &r.idx, 0, r.n_slots).map_err(err)?;
        let layer = match site {
            "ffn" => pass.layer.saturating_sub(1),
            _ => pass.layer,
        };
        trace.push(RouteTrace {
            layer,
            site,
            rows: n,
            groups,
            k,
            idx,
        });
    }
    Ok(r)
}

/// `y = sum_j g_j * (relu(x @ keys[e_j]) @ values[e_j])` over the K_ff chosen experts.
pub(crate) fn sigma_moe<D: Device>(
    pass: &mut Pass<'_, '_, D>,
    s: &Step,
    a: &SigmaMoeAttrs,
) -> Result<Tensor<D::Buffer>, String> {
    let x = pass.act(s.inputs[0])?.clone();
    let (router, keys, values) = (
        pass.weight(s.inputs[1])?,
        pass.weight(s.inputs[2])?,
        pass.weight(s.inputs[3])?,
    );
    let (n, d, g) = (x.rows(), x.last(), a.expert_size);
    let logits = project(&pass.m.dev, &x, router, 1.0).map_err(err)?;
    let r = route(pass, &logits.buf, n, (1, a.experts, a.k), "ffn")?;
    let dev = &pass.m.dev;
    let hidden = zeros(dev, vec![r.n_slots, g]).map_err(err)?;
    let input = ExpertInput {
        x: &*x.buf,
        row_stride: d,
        group_stride: 0,
        by_slot: true,
    };
    let store = ExpertOutput {
        y: &*hidden.buf,
        row_stride: g,
        group_stride: 0,
        epilogue: Epilogue::ReluStore,
    };
    l::expert_gemm(dev, input, (w(keys), d, g), &r, store).map_err(err)?;
    let y = zeros(dev, x.shape.clone()).map_err(err)?;
    let sorted = ExpertInput {
        x: &*hidden.buf,
        row_stride: g,
        group_stride: 0,
        by_slot: false,
    };
    let add = ExpertOutput {
        y: &*y.buf,
        row_stride: d,
        group_stride: 0,
        epilogue: Epilogue::GatedAdd,
    };
    l::expert_gemm(dev, sorted, (w(values), g, d), &r, add).map_err(err)?;
    Ok(y)
}
