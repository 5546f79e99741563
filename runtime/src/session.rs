//! `Session`: one loaded model and the checks around every run.

use std::path::{Path, PathBuf};

use prost::Message;
use tract_onnx::pb;

#[allow(unused_imports)]
use crate::backend::DeviceBackend;
use crate::backend::opencl::Accept;
use crate::backend::{Backend, CpuBackend};
use crate::info::{MEMORY, ModelInfo, read_info};
use crate::{
    BackendKind, Decoder, DeviceDType, Logits, RuntimeError, SessionOptions, TokenBatch, XlMemory,
};

/// A compiled SwitchHead model ready to run.
#[derive(Debug)]
pub struct Session {
    backend: Box<dyn Backend>,
    info: ModelInfo,
    path: PathBuf,
}

impl Session {
    /// Loads the ONNX file at `path` (external data beside it) for `options.backend`, or a
    /// `.shplan` plan (by extension or magic) on the native executor. The device executors
    /// (CUDA, OpenCL) run a plan, or an ONNX file as the plan it embeds.
    pub fn load(path: impl AsRef<Path>, options: SessionOptions) -> Result<Session, RuntimeError> {
        let path = path.as_ref().to_path_buf();
        if let Some((backend, info)) = device_backend(&path, &options)? {
            return Ok(Session {
                backend,
                info,
                path,
            });
        }
        if crate::native::is_plan(&path) {
            let threads = options.resolved_threads();
            let (backend, info) = crate::native::load_session_parts(&path, threads)?;
            let backend = Box::new(backend);
            return Ok(Session {
                backend,
                info,
                path,
            });
        }
        let bytes = std::fs::read(&path).map_err(|source| RuntimeError::Io {
            path: path.clone(),
            source,
        })?;
        let mut proto = decode(&bytes, &path)?;
        crate::onnx::fold_dequantize(&mut proto, path.parent().unwrap_or(Path::new(".")))?;
        crate::onnx::check_model(&proto, &crate::onnx::switchhead_onnx())?;
        let dir = path
            .parent()
            .and_then(Path::to_str)
            .filter(|d| !d.is_empty())
            .unwrap_or(".");
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| not_onnx(&path, "no graph"))?;
        let memory_d = crate::info::input_last_dim(graph, &format!("{MEMORY}0"));
        // The interface first (vocab size is filled in once the backend knows it).
        let kv = read_info(&proto, 0)?.kv;
        let threads = options.resolved_threads();
        let backend: Box<dyn Backend> = Box::new(CpuBackend::prepare(
            &proto,
            Some(dir),
            memory_d,
            kv,
            threads,
        )?);
        let vocab = backend
            .vocab_size()
            .ok_or_else(|| RuntimeError::Interface {
                reason: "the logits output has no known vocabulary size".into(),
            })?;
        let info = read_info(&proto, vocab)?;
        Ok(Session {
            backend,
            info,
            path,
        })
    }

    /// Logits for a batch. XL models run with empty memory.
    pub fn logits(&self, tokens: &TokenBatch) -> Result<Logits, RuntimeError> {
        self.check_tokens(tokens)?;
        let empty = XlMemory::empty(tokens.batch, self.info.d_model, self.info.memory_layers);
        let memory = self.info.is_xl().then_some(&empty);
        let out = self.backend.run(tokens, memory)?;
        self.logits_of(tokens, out.logits)
    }

    /// One chunk of an XL model: logits, and the memory for the next chunk (this chunk's
    /// layer inputs). `None` starts with empty memory.
    pub fn forward_chunk(
        &self,
        tokens: &TokenBatch,
        memory: Option<&XlMemory>,
    ) -> Result<(Logits, XlMemory), RuntimeError> {
        if !self.info.is_xl() {
            return Err(RuntimeError::NotXl(format!(
                "{} is not an XL model: use logits()",
                self.path.display()
            )));
        }
        self.check_tokens(tokens)?;
        let empty = XlMemory::empty(tokens.batch, self.info.d_model, self.info.memory_layers);
        let memory = memory.unwrap_or(&empty);
        self.check_memory(tokens, memory)?;
        let out = self.backend.run(tokens, Some(memory))?;
        let next = XlMemory {
            batch: tokens.batch,
            mem_len: tokens.seq,
            d_model: self.info.d_model,
            layers: out.memory,
        };
        Ok((self.logits_of(tokens, out.logits)?, next))
    }

    /// A stateful decoder for one sequence: feed it tokens a step at a time (see [`Decoder`]).
    /// RoPE models need a KV cache (`switchhead-compile --kv-cache`); XL models carry memory.
    pub fn decoder(&self) -> Result<Decoder<'_>, RuntimeError> {
        Decoder::new(self, 1)
    }

    /// A stateful decoder for `batch` sequences side by side.
    pub fn decoder_batch(&self, batch: usize) -> Result<Decoder<'_>, RuntimeError> {
        Decoder::new(self, batch)
    }

    /// The file this session was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// Vocabulary size V.
    pub fn vocab_size(&self) -> usize {
        self.info.vocab_size
    }

    /// Number of layers.
    pub fn n_layers(&self) -> usize {
        self.info.n_layers
    }

    /// Model width D.
    pub fn d_model(&self) -> usize {
        self.info.d_model
    }

    /// True for Transformer-XL models (they take and return memory).
    pub fn is_xl(&self) -> bool {
        self.info.is_xl()
    }

    /// All shape facts at once.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The backend running the model.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    pub(crate) fn check_tokens(&self, tokens: &TokenBatch) -> Result<(), RuntimeError> {
        if tokens.batch == 0 || tokens.seq == 0 {
            return Err(RuntimeError::EmptyInput {
                batch: tokens.batch,
                seq: tokens.seq,
            });
        }
        tokens.check_len()?;
        let vocab = self.info.vocab_size;
        match tokens
            .tokens
            .iter()
            .position(|&t| t < 0 || t as u64 >= vocab as u64)
        {
            Some(i) => Err(RuntimeError::TokenOutOfRange {
                token: tokens.tokens[i],
                batch: i / tokens.seq,
                position: i % tokens.seq,
                vocab,
            }),
            None => Ok(()),
        }
    }

    fn check_memory(&self, tokens: &TokenBatch, m: &XlMemory) -> Result<(), RuntimeError> {
        let (layers, d) = (self.info.memory_layers, self.info.d_model);
        let per_layer = m.batch * m.mem_len * m.d_model;
        let ok = m.batch == tokens.batch
            && m.d_model == d
            && m.layers.len() == layers
            && m.layers.iter().all(|l| l.len() == per_layer);
        if ok {
            return Ok(());
        }
        Err(RuntimeError::ShapeMismatch {
            tensor: "XL memory".into(),
            expected: format!("{layers} layers of [{}, mem_len, {d}]", tokens.batch),
            got: format!(
                "{} layers of [{}, {}, {}] with sizes {:?}",
                m.layers.len(),
                m.batch,
                m.mem_len,
                m.d_model,
                m.layers.iter().map(Vec::len).collect::<Vec<_>>()
            ),
        })
    }

    pub(crate) fn logits_of(
        &self,
        tokens: &TokenBatch,
        data: Vec<f32>,
    ) -> Result<Logits, RuntimeError> {
        let vocab = self.info.vocab_size;
        if data.len() != tokens.batch * tokens.seq * vocab {
            return Err(RuntimeError::ShapeMismatch {
                tensor: "logits".into(),
                expected: format!("[{}, {}, {vocab}]", tokens.batch, tokens.seq),
                got: format!("{} values", data.len()),
            });
        }
        Ok(Logits {
            batch: tokens.batch,
            seq: tokens.seq,
            vocab,
            data,
        })
    }
}

/// A backend and the model's facts.
type Loaded = (Box<dyn Backend>, ModelInfo);

/// The device backend `options` asks for, if any: CUDA or OpenCL run plans (an ONNX file as
/// the plan it embeds); `Auto` takes CUDA, else an OpenCL GPU, when one can run the model,
/// else nothing.
fn device_backend(path: &Path, options: &SessionOptions) -> Result<Option<Loaded>, RuntimeError> {
    let dtype = options.dtype;
    match options.backend {
        BackendKind::Cpu => Ok(None),
        BackendKind::Auto => Ok(load_cuda(path, dtype)
            .or_else(|_| load_opencl(path, dtype, Accept::GpuOnly))
            .ok()),
        BackendKind::Cuda => load_cuda(path, dtype).map(Some),
        BackendKind::OpenCl => load_opencl(path, dtype, Accept::Any).map(Some),
    }
}

#[cfg(any(feature = "cuda", feature = "opencl"))]
fn wtype(dtype: DeviceDType) -> switchhead_kernels::gpu::WType {
    match dtype {
        DeviceDType::F32 => switchhead_kernels::gpu::WType::F32,
        DeviceDType::Bf16 => switchhead_kernels::gpu::WType::Bf16,
    }
}

#[cfg(feature = "cuda")]
fn load_cuda(path: &Path, dtype: DeviceDType) -> Result<Loaded, RuntimeError> {
    let dev = crate::backend::cuda::open_device()?;
    load_on(dev, path, dtype)
}

#[cfg(not(feature = "cuda"))]
fn load_cuda(_path: &Path, _dtype: DeviceDType) -> Result<Loaded, RuntimeError> {
    Err(crate::backend::cuda::unavailable(
        crate::backend::CudaUnavailable::NotBuilt,
    ))
}

#[cfg(feature = "opencl")]
fn load_opencl(path: &Path, dtype: DeviceDType, accept: Accept) -> Result<Loaded, RuntimeError> {
    let dev = crate::backend::opencl::open_device(accept)?;
    load_on(dev, path, dtype)
}

#[cfg(not(feature = "opencl"))]
fn load_opencl(_path: &Path, _dtype: DeviceDType, accept: Accept) -> Result<Loaded, RuntimeError> {
    match crate::backend::opencl::open_device(accept)? {}
}

/// The plan at `path` (or the plan an ONNX file embeds) on `dev`.
#[cfg(any(feature = "cuda", feature = "opencl"))]
fn load_on<D: switchhead_kernels::gpu::Device>(
    dev: D,
    path: &Path,
    dtype: DeviceDType,
) -> Result<Loaded, RuntimeError> {
    let b = DeviceBackend::load(dev, path, wtype(dtype))?;
    let info = b.info().clone();
    Ok((Box::new(b), info))
}

fn decode(bytes: &[u8], path: &Path) -> Result<pb::ModelProto, RuntimeError> {
    let proto = pb::ModelProto::decode(bytes).map_err(|e| not_onnx(path, &e.to_string()))?;
    if proto.graph.is_none() || proto.opset_import.is_empty() {
        return Err(not_onnx(path, "no graph or no opset_import"));
    }
    Ok(proto)
}

fn not_onnx(path: &Path, reason: &str) -> RuntimeError {
    RuntimeError::NotOnnx {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}
