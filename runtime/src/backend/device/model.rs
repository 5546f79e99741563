//! A plan loaded onto a device: the program, the uploaded weights, the XL position keys kept
//! per node, and the device-side state of decoding (the KV cache).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use switchhead_kernels::gpu::launch::{self as l, AttnDims};
use switchhead_kernels::gpu::{Device, GpuError, WType};

use super::weights::{DeviceWeights, upload};
use crate::native::{Program, WeightStore};

/// One router's choices in one pass: `idx` `[rows, groups, k]`, flat expert ids
/// (`group * E + e`), in the order the router ranked them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTrace {
    /// Index of the layer (attention layers counted from 0; σ-MoE takes its layer's).
    pub layer: usize,
    /// `v` and `o` (attention), `ffn` (σ-MoE).
    pub site: &'static str,
    pub rows: usize,
    pub groups: usize,
    pub k: usize,
    pub idx: Vec<i32>,
}

/// Per XL attention step: the key count of its kept position keys, and the keys.
type KeptKeys<B> = HashMap<usize, (usize, Arc<B>)>;

/// The plan, its weights on `dev`, and what passes keep between them.
#[derive(Debug)]
pub(crate) struct Model<D: Device> {
    pub dev: D,
    pub program: Program,
    pub weights: DeviceWeights<D::Buffer>,
    pos_keys: Mutex<KeptKeys<D::Buffer>>,
}

impl<D: Device> Model<D> {
    /// Uploads `store`'s weights (checked against the device's memory first).
    pub fn new(
        dev: D,
        program: Program,
        store: &WeightStore,
        dtype: WType,
    ) -> Result<Self, GpuError> {
        let weights = upload(&dev, (&program, store), dtype)?;
        Ok(Model {
            dev,
            program,
            weights,
            pos_keys: Mutex::new(HashMap::new()),
        })
    }

    /// Step `index`'s position keys, if the last ones it computed were for `tk` keys.
    pub fn kept_position_keys(&self, index: usize, tk: usize) -> Option<Arc<D::Buffer>> {
        let kept = self.pos_keys.lock().ok()?;
        kept.get(&index)
            .filter(|(n, _)| *n == tk)
            .map(|(_, b)| Arc::clone(b))
    }

    /// Keeps step `index`'s position keys for `tk` keys (replacing any others).
    pub fn keep_position_keys(&self, index: usize, tk: usize, keys: Arc<D::Buffer>) {
        if let Ok(mut kept) = self.pos_keys.lock() {
            kept.insert(index, (tk, keys));
        }
    }
}

/// The KV cache of a RoPE model on the device: per layer, keys (scaled, rotated) and values
/// `[batch, capacity, H*dh]`, `len` rows held; new rows are appended in place.
#[derive(Debug)]
pub(crate) struct KvState<B> {
    pub layers: Vec<(B, B)>,
    pub batch: usize,
    pub hd: usize,
    pub capacity: usize,
    pub len: usize,
}

impl<B> KvState<B> {
    /// An empty cache of `capacity` rows per batch row for `layers` layers.
    pub fn new<D: Device<Buffer = B>>(
        dev: &D,
        (layers, batch, hd): (usize, usize, usize),
        capacity: usize,
    ) -> Result<Self, GpuError> {
        let bytes = batch * capacity * hd * 4;
        let layers = (0..layers)
            .map(|_| Ok((dev.alloc_zeroed(bytes)?, dev.alloc_zeroed(bytes)?)))
            .collect::<Result<_, GpuError>>()?;
        Ok(KvState {
            layers,
            batch,
            hd,
            capacity,
            len: 0,
        })
    }

    /// Appends layer `layer`'s new keys and values (`a.t` rows per batch row) after the
    /// `len` held, then attends the new queries over all of them.
    pub fn attend<D: Device<Buffer = B>>(
        &self,
        dev: &D,
        layer: usize,
        (q, k, v): (&B, &B, &B),
        out: &B,
        a: AttnDims,
    ) -> Result<(), GpuError> {
        let (kc, vc) = self.layers.get(layer).ok_or_else(|| {
            GpuError::shape("kv_append", format!("the KV cache has no layer {layer}"))
        })?;
        let sizes = (a.batch, a.t, self.hd);
        l::kv_append(dev, (k, v), (kc, vc), sizes, (self.capacity, self.len))?;
        let cached = AttnDims {
            tk: self.len + a.t,
            kv_rows: self.capacity,
            ..a
        };
        l::flash_attention(dev, (q, kc, vc), None, out, cached)
    }
}
