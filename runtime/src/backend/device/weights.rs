//! The plan's weights on the device: unpacked to row-major (the CPU's panel layouts are for
//! its register tile, not for the device kernels), converted to bf16 when asked, uploaded
//! once. The total is checked against the device's memory before the first byte is uploaded.
//!
//! bf16 takes the matrices the products stream (projections, V/O experts, σ-MoE experts, the
//! FFN, the output layer). Kept f32: vectors (LayerNorm, biases), the embedding table (a
//! lookup, no product to speed up) and every weight holding router rows (the separate
//! routers, and merged projections that include them): a gate rounded to bf16 flips near-tied
//! expert choices, which moved `rope`'s logits by 5% against 0.1% with them in f32.

use crate::native::{Program, WeightStore};
use switchhead_kernels::gpu::{Device, DeviceDesc, GpuError, WType, bf16_bytes, f32_bytes};

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
    let keep = program.kept_f32(store.len());
    (0..store.len())
        .map(|i| match keep[i] || store.shape(i).len() < 2 {
            true => WType::F32,
            false => dtype,
        })
        .collect()
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
    let data = store.logical_f32(i);
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
