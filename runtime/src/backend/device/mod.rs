//! The device executor: runs a native plan's op list on a GPU (or any OpenCL device), written
//! once over the [`Device`] interface of `switchhead_kernels::gpu` and instantiated for CUDA
//! and OpenCL.
//!
//! Loading verifies the plan as the native executor does, then uploads the weights once
//! (row-major; f32, or bf16 matrices with f32 accumulation), after checking they fit the
//! device's memory. A pass keeps activations, dispatch lists and XL position keys on the
//! device; only the tokens go up and the logits come down. Decoding
//! ([`crate::Session::decoder`]) keeps its state on the device too: the KV cache of a RoPE
//! model (spare capacity, appended in place, grown by doubling) or the XL memory.

mod attention;
mod decode;
mod exec;
mod model;
mod moe;
mod tensor;
mod weights;

use std::path::Path;
use std::sync::Arc;

use switchhead_kernels::gpu::{Device, GpuError, WType, download_f32, f32_bytes, i64_bytes};

use crate::backend::{Backend, BackendOutput, ResidentDecoder};
use crate::{ModelInfo, RuntimeError, TokenBatch, XlMemory};
use exec::{Pass, PassIo, PassOut, Value};
use model::Model;
pub use model::RouteTrace;
use tensor::Tensor;
pub use weights::MEMORY_LIMIT_ENV;

/// A plan loaded on a device.
#[derive(Debug)]
pub struct DeviceBackend<D: Device> {
    model: Model<D>,
    info: ModelInfo,
}

fn gpu(api: &'static str) -> impl Fn(GpuError) -> RuntimeError {
    move |e| match e {
        GpuError::Unavailable { .. } | GpuError::OutOfMemory { .. } | GpuError::Build { .. } => {
            RuntimeError::BackendUnavailable {
                backend: api,
                reason: e.to_string(),
            }
        }
        _ => RuntimeError::Execution {
            backend: api,
            reason: e.to_string(),
        },
    }
}

impl<D: Device> DeviceBackend<D> {
    /// Verifies the plan at `path` (a `.shplan` file, or the plan an ONNX file from
    /// `switchhead-compile` embeds) and uploads its weights to `dev` in `dtype`.
    pub fn load(dev: D, path: &Path, dtype: WType) -> Result<Self, RuntimeError> {
        let (program, store) = match crate::native::is_plan(path) {
            true => crate::native::load_parts(path)?,
            false => crate::native::load_onnx_parts(path)?,
        };
        let info = crate::native::model_info(&program);
        let api = dev.desc().api;
        let model = Model::new(dev, program, &store, dtype).map_err(gpu(api))?;
        Ok(DeviceBackend { model, info })
    }

    /// The model's shape facts.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The device it runs on.
    pub fn device(&self) -> &D {
        &self.model.dev
    }

    /// Bytes of weights on the device.
    pub fn weight_bytes(&self) -> u64 {
        self.model.weights.bytes
    }

    /// Like [`Backend::run`], and every router's expert ids of the pass.
    pub fn run_traced(
        &self,
        tokens: &TokenBatch,
        memory: Option<&XlMemory>,
    ) -> Result<(BackendOutput, Vec<RouteTrace>), RuntimeError> {
        let mut trace = Vec::new();
        let out = self.run_host(tokens, memory, Some(&mut trace))?;
        Ok((out, trace))
    }

    fn api(&self) -> &'static str {
        self.model.dev.desc().api
    }

    fn run_host(
        &self,
        tokens: &TokenBatch,
        memory: Option<&XlMemory>,
        trace: Option<&mut Vec<RouteTrace>>,
    ) -> Result<BackendOutput, RuntimeError> {
        let memory = memory
            .map(|m| self.upload_memory(m))
            .transpose()
            .map_err(gpu(self.api()))?;
        let io = PassIo {
            memory: memory.as_deref(),
            kv: None,
            trace,
        };
        let out = self.pass(tokens, io)?;
        let download = |t: &Tensor<D::Buffer>| download_f32(&self.model.dev, &t.buf, 0, t.len());
        let logits = download(&out.logits).map_err(gpu(self.api()))?;
        let memory = out
            .memory_out
            .iter()
            .map(download)
            .collect::<Result<_, _>>()
            .map_err(gpu(self.api()))?;
        Ok(BackendOutput { logits, memory })
    }

    /// One pass on `tokens` (uploaded here) with `io`.
    pub(crate) fn pass(
        &self,
        tokens: &TokenBatch,
        io: PassIo<'_, D::Buffer>,
    ) -> Result<PassOut<D::Buffer>, RuntimeError> {
        let dev = &self.model.dev;
        let buf = dev
            .upload(&i64_bytes(&tokens.tokens))
            .map_err(gpu(self.api()))?;
        let value = Value::Tokens {
            buf: Arc::new(buf),
            batch: tokens.batch,
            seq: tokens.seq,
        };
        Pass::run(&self.model, value, io).map_err(|reason| RuntimeError::Execution {
            backend: self.api(),
            reason,
        })
    }

    fn upload_memory(&self, m: &XlMemory) -> Result<Vec<Tensor<D::Buffer>>, GpuError> {
        m.layers
            .iter()
            .map(|layer| {
                Ok(Tensor {
                    buf: Arc::new(self.model.dev.upload(&f32_bytes(layer))?),
                    shape: vec![m.batch, m.mem_len, m.d_model],
                })
            })
            .collect()
    }
}

impl<D: Device> Backend for DeviceBackend<D> {
    fn name(&self) -> &'static str {
        self.api()
    }

    fn vocab_size(&self) -> Option<usize> {
        Some(self.info.vocab_size)
    }

    fn run(
        &self,
        tokens: &TokenBatch,
        memory: Option<&XlMemory>,
    ) -> Result<BackendOutput, RuntimeError> {
        self.run_host(tokens, memory, None)
    }

    fn resident_decoder(
        &self,
        batch: usize,
    ) -> Option<Result<Box<dyn ResidentDecoder + '_>, RuntimeError>> {
        Some(decode::open(self, batch))
    }
}
