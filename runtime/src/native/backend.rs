//! [`NativeBackend`]: a loaded, verified plan behind the [`Backend`] trait.

use std::io::Read;
use std::path::Path;

use switchhead_ops::op::{Op, PosEncoding};
use switchhead_ops::plan::{MAGIC, read_plan};

use super::exec::{run, run_kv, run_kv_rows};
use super::program::Program;
use super::weights::WeightStore;
use crate::backend::{Backend, BackendOutput};
use crate::info::KvShape;
use crate::{KvCache, ModelInfo, RuntimeError, TokenBatch, XlMemory};

/// Runs a `.shplan` file with the native CPU kernels.
#[derive(Debug)]
pub struct NativeBackend {
    program: Program,
    weights: WeightStore,
    threads: usize,
    /// The KV cache a decoding step extends (RoPE plans), from the program at load.
    kv: Option<KvShape>,
}

impl NativeBackend {
    /// Maps, verifies and prepares the plan at `path` to run on `threads` threads.
    pub fn load(path: &Path, threads: usize) -> Result<Self, RuntimeError> {
        let (program, weights) = load_parts(path)?;
        Ok(NativeBackend {
            kv: kv_shape(&program),
            program,
            weights,
            threads: threads.max(1),
        })
    }

    /// A cache this plan can extend (see [`KvCache::check`]).
    fn check_cache(&self, cache: &KvCache) -> Result<(), RuntimeError> {
        let kv = self.kv.as_ref().ok_or_else(|| RuntimeError::Interface {
            reason: "this plan has no RoPE attention to cache".into(),
        })?;
        cache.check(kv)
    }

    /// The model's shape facts, from the plan's meta and interface.
    pub fn info(&self) -> ModelInfo {
        model_info(&self.program)
    }
}

/// Maps and verifies the plan at `path`: its program and weights.
pub(crate) fn load_parts(path: &Path) -> Result<(Program, WeightStore), RuntimeError> {
    let io = |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    // SAFETY: the map is read-only; like every mmap-based loader we rely on the file not
    // being truncated or rewritten while a session holds it (the compiler replaces plans
    // by rename, which leaves a mapped file intact).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    parts_of_map(map, path)
}

/// The plan embedded in the ONNX file at `path` ([`crate::onnx::plan_map`]), verified as a
/// plan file is: its program and weights.
pub(crate) fn load_onnx_parts(path: &Path) -> Result<(Program, WeightStore), RuntimeError> {
    parts_of_map(crate::onnx::plan_map(path)?, path)
}

/// Verifies the plan in `map` (read from `path`): its program and weights.
fn parts_of_map(map: memmap2::Mmap, path: &Path) -> Result<(Program, WeightStore), RuntimeError> {
    let invalid = |reason: String| RuntimeError::InvalidPlan {
        path: path.to_path_buf(),
        reason,
    };
    let (program, layout) = {
        let plan = read_plan(&map).map_err(|e| invalid(e.to_string()))?;
        let program = Program::new(&plan).map_err(invalid)?;
        (program, (plan.graph.weights, plan.header.weights_offset))
    };
    let keep = program.kept_f32(layout.0.len());
    let weights = WeightStore::new(map, &layout.0, layout.1, &keep).map_err(invalid)?;
    Ok((program, weights))
}

/// A program's shape facts, from the plan's meta and interface.
pub(crate) fn model_info(program: &Program) -> ModelInfo {
    let m = &program.meta;
    ModelInfo {
        vocab_size: m.vocab_size,
        n_layers: m.n_layers.max(program.memory.len()),
        d_model: m.d_model,
        memory_layers: program.memory.len(),
        kv: kv_shape(program),
        chunk_size: m.chunk_size,
    }
}

/// RoPE plans decode with a KV cache kept by the executor: one per attention step.
fn kv_shape(program: &Program) -> Option<KvShape> {
    if !program.memory.is_empty() {
        return None;
    }
    let attention: Vec<_> = program
        .steps
        .iter()
        .filter_map(|s| match &s.op {
            Op::MoEAttention(a) => Some(a),
            _ => None,
        })
        .collect();
    let first = attention.first()?;
    let rope = attention.iter().all(|a| {
        matches!(a.pos, PosEncoding::Rope { .. })
            && (a.heads, a.d_head) == (first.heads, first.d_head)
    });
    rope.then_some(KvShape {
        layers: attention.len(),
        heads: first.heads,
        d_head: first.d_head,
    })
}

impl Backend for NativeBackend {
    fn name(&self) -> &'static str {
        "native"
    }

    fn vocab_size(&self) -> Option<usize> {
        Some(self.program.meta.vocab_size)
    }

    fn run(
        &self,
        tokens: &TokenBatch,
        memory: Option<&XlMemory>,
    ) -> Result<BackendOutput, RuntimeError> {
        run(&self.program, &self.weights, tokens, memory, self.threads)
    }

    fn run_kv(&self, tokens: &TokenBatch, cache: &mut KvCache) -> Result<Vec<f32>, RuntimeError> {
        self.check_cache(cache)?;
        cache.reserve(tokens.seq);
        let out = run_kv(&self.program, &self.weights, tokens, cache, self.threads)?;
        cache.past += tokens.seq;
        Ok(out.logits)
    }

    fn run_kv_rows(
        &self,
        tokens: &[i64],
        caches: &mut [&mut KvCache],
    ) -> Option<Result<Vec<f32>, RuntimeError>> {
        let mut step = || {
            let batch = TokenBatch::new(tokens.len(), 1, tokens.to_vec())?;
            for c in caches.iter_mut() {
                self.check_cache(c)?;
                c.reserve(1);
            }
            let out = run_kv_rows(&self.program, &self.weights, &batch, caches, self.threads)?;
            caches.iter_mut().for_each(|c| c.past += 1);
            Ok(out.logits)
        };
        Some(step())
    }
}

/// True when `path` names a plan: a `.shplan` file name, or a file starting with the plan
/// magic (a `.shplan` without it then fails to load as "not a plan").
pub(crate) fn is_plan(path: &Path) -> bool {
    if path.extension().is_some_and(|e| e == "shplan") {
        return true;
    }
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|_| head == MAGIC)
}

/// What `Session::load` needs for a plan: the backend and the model's facts.
pub(crate) fn load_session_parts(
    path: &Path,
    threads: usize,
) -> Result<(NativeBackend, ModelInfo), RuntimeError> {
    let backend = NativeBackend::load(path, threads)?;
    let info = backend.info();
    Ok((backend, info))
}
