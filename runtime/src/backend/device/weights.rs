//! The plan's weights on the device: unpacked to row-major (the CPU's panel layouts are for
//! its register tile, not for the device kernels), converted to bf16 when asked, uploaded
//! once. The total is checked against the device's memory before the first byte is uploaded.
//!
//! bf16 takes the matrices the products stream (projections, V/O experts, σ-MoE experts, the
//! FFN, the output layer). Kept f32: vectors (LayerNorm, biases), the embedding table (a
//! lookup, no product to speed up) and every weight holding router rows (the separate
//! routers, and merged projections that include them): a gate rounded to bf16 flips near-tied
//! expert choices, which moved `rope`'s logits by 5% against 0.1% with them in f32.

use switchhead_kernels::gpu::{Device, DeviceDesc, GpuError, WType, bf16_bytes, f32_bytes};
use switchhead_ops::plan::{PANEL, PlanLayout, from_panels};

use switchhead_ops::op::{Merge, Op};

use crate::native::{Program, WeightStore};

/// Environment variable capping the device memory the runtime assumes is there, in MiB (to
/// share a device, or to check the out-of-memory path on a large one).
pub const MEMORY_LIMIT_ENV: &str = "SWITCHHEAD_DEVICE_MEMORY_LIMIT_MIB";

/// One weight on the device, row-major in its logical shape.
#[derive(Debug)]
pub(crate) struct DevWeight<B> {
    pub buf: B,
    pub wtype: WType,
    pub shape: Vec<usize>,
}

/// Every weight of a plan, indexed like the plan's weights.
#[derive(Debug)]
pub(crate) struct DeviceWeights<B> {
    pub weights: Vec<DevWeight<B>>,
    /// Bytes uploaded.
    pub bytes: u64,
}

/// The element type of every weight of `program` for `dtype` (see the module docs).
pub(crate) fn wtypes(program: &Program, store: &WeightStore, dtype: WType) -> Vec<WType> {
    let mut keep = vec![false; store.len()];
    for s in &program.steps {
        for slot in kept_f32_slots(&s.op) {
            if let Some(i) = s.inputs.get(slot).and_then(|&v| program.weight_of[v]) {
                keep[i] = true;
            }
        }
    }
    (0..store.len())
        .map(|i| match keep[i] || store.shape(i).len() < 2 {
            true => WType::F32,
            false => dtype,
        })
        .collect()
}

/// The input slots of `op` whose weights stay f32: embedding tables and router rows.
fn kept_f32_slots(op: &Op) -> Vec<usize> {
    match op {
        Op::Embedding => vec![1],
        Op::SigmaMoe(_) => vec![1],
        Op::MoEAttention(a) => {
            let s = a.slots();
            let merged = (a.merged != Merge::None).then_some([s.q, s.k]);
            merged
                .into_iter()
                .flatten()
                .chain(s.sel_v)
                .chain(s.sel_o)
                .collect()
        }
        _ => Vec::new(),
    }
}

/// Bytes the weights of `store` take on the device with element types `wtypes`.
pub(crate) fn device_bytes(store: &WeightStore, wtypes: &[WType]) -> u64 {
    (0..store.len())
        .map(|i| (store.shape(i).iter().product::<usize>() * wtypes[i].size()) as u64)
        .sum()
}

/// The memory the runtime may use on `desc`'s device: its global memory, or the cap of
/// [`MEMORY_LIMIT_ENV`].
pub(crate) fn memory_budget(desc: &DeviceDesc) -> u64 {
    let cap = std::env::var(MEMORY_LIMIT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|mib| mib << 20);
    cap.map_or(desc.memory_bytes, |c| c.min(desc.memory_bytes))
}

/// Checks the budget, then uploads every weight of `store` (`program`'s) for `dtype`.
pub(crate) fn upload<D: Device>(
    dev: &D,
    (program, store): (&Program, &WeightStore),
    dtype: WType,
) -> Result<DeviceWeights<D::Buffer>, GpuError> {
    let wtypes = wtypes(program, store, dtype);
    let bytes = device_bytes(store, &wtypes);
    let budget = memory_budget(dev.desc());
    if bytes > budget {
        return Err(GpuError::OutOfMemory {
            api: dev.desc().api,
            device: dev.desc().name.clone(),
            what: format!("the model's {} weights", dtype.name()),
            needed_mib: bytes.div_ceil(1 << 20),
            available_mib: budget >> 20,
        });
    }
    let weights = (0..store.len())
        .map(|i| upload_one(dev, store, i, wtypes[i]))
        .collect::<Result<_, _>>()?;
    Ok(DeviceWeights { weights, bytes })
}

fn upload_one<D: Device>(
    dev: &D,
    store: &WeightStore,
    i: usize,
    wtype: WType,
) -> Result<DevWeight<D::Buffer>, GpuError> {
    let shape = store.shape(i).to_vec();
    let data = row_major(store.data(i), &shape, store.layout(i));
    let bytes = match wtype {
        WType::F32 => f32_bytes(&data),
        WType::Bf16 => bf16_bytes(&data),
    };
    Ok(DevWeight {
        buf: dev.upload(&bytes)?,
        wtype,
        shape,
    })
}

/// The row-major elements of a weight stored in `layout`.
fn row_major(stored: &[f32], shape: &[usize], layout: PlanLayout) -> Vec<f32> {
    match (layout, shape) {
        (PlanLayout::Panels, &[out, inp]) => from_panels(stored, out, inp),
        (PlanLayout::ExpertPanels, &[experts, inp, out]) => {
            let per = out.div_ceil(PANEL) * PANEL * inp;
            let mut w = Vec::with_capacity(experts * inp * out);
            for e in 0..experts {
                let t = from_panels(&stored[e * per..(e + 1) * per], out, inp);
                w.extend((0..inp * out).map(|j| t[(j % out) * inp + j / out]));
            }
            w
        }
        _ => stored.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchhead_ops::plan::to_panels;

    #[test]
    fn packed_layouts_unpack_to_row_major() {
        let (out, inp) = (37, 5);
        let w: Vec<f32> = (0..out * inp).map(|i| i as f32).collect();
        let packed = to_panels(&w, out, inp);
        assert_eq!(row_major(&packed, &[out, inp], PlanLayout::Panels), w);
        // Two experts [inp, out]: each stored as the panels of its [out, inp] transpose.
        let experts: Vec<f32> = (0..2 * inp * out).map(|i| i as f32 * 0.5).collect();
        let mut stored = Vec::new();
        for e in experts.chunks(inp * out) {
            let t: Vec<f32> = (0..out * inp)
                .map(|j| e[(j % inp) * out + j / inp])
                .collect();
            stored.extend(to_panels(&t, out, inp));
        }
        let shape = [2, inp, out];
        assert_eq!(
            row_major(&stored, &shape, PlanLayout::ExpertPanels),
            experts
        );
    }
}
