//! The CPU backend: tract, with our ops registered, typed with symbolic `batch`, `seq` and
//! `mem_len` and optimised once at load. Matrix products and our kernels run on a private
//! `threads`-wide pool, installed around each run (`multithread_tract_scope`), so sessions
//! with different thread counts do not interfere.

use tract_linalg::multithread::{Executor, multithread_tract_scope};
use tract_onnx::pb;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::DimLike;

use crate::info::{LOGITS, MEMORY, MEMORY_OUT, TOKENS};
use crate::{RuntimeError, TokenBatch, XlMemory};

use super::{Backend, BackendOutput};

const NAME: &str = "cpu";

/// What feeds a model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    Tokens,
    Memory(usize),
}

/// The tract CPU backend.
#[derive(Debug)]
pub struct CpuBackend {
    plan: Arc<TypedRunnableModel>,
    feeds: Vec<Feed>,
    logits_ix: usize,
    memory_ix: Vec<usize>,
    vocab: Option<usize>,
    executor: Executor,
}

impl CpuBackend {
    /// Parses, types and optimises `proto` (external data resolved against `model_dir`).
    pub fn prepare(
        proto: &pb::ModelProto,
        model_dir: Option<&str>,
        memory_d: Option<usize>,
        threads: usize,
    ) -> Result<Self, RuntimeError> {
        let framework = crate::onnx::switchhead_onnx();
        let mut model = framework
            .parse(proto, model_dir)
            .map_err(|e| prepare("parsing", e))?
            .model;
        let feeds = input_feeds(&model)?;
        set_input_facts(&mut model, &feeds, memory_d)
            .map_err(|e| prepare("setting input shapes", e))?;
        let typed = model
            .into_optimized()
            .map_err(|e| prepare("typing and optimising", e))?;
        let plan = typed.into_runnable().map_err(|e| prepare("planning", e))?;
        let outputs = output_names(proto);
        let logits_ix = outputs
            .iter()
            .position(|n| n == LOGITS)
            .ok_or_else(|| interface("no logits output"))?;
        let memory_ix = memory_outputs(
            &outputs,
            feeds
                .iter()
                .filter(|f| matches!(f, Feed::Memory(_)))
                .count(),
        )?;
        let vocab = plan
            .model()
            .output_fact(logits_ix)
            .ok()
            .and_then(|f| f.shape.last().and_then(|d| d.to_usize().ok()));
        Ok(CpuBackend {
            plan,
            feeds,
            logits_ix,
            memory_ix,
            vocab,
            executor: executor(threads)?,
        })
    }

    fn inputs(
        &self,
        tokens: &TokenBatch,
        memory: Option<&XlMemory>,
    ) -> Result<TVec<TValue>, RuntimeError> {
        let mut out = TVec::new();
        for feed in &self.feeds {
            let t = match (feed, memory) {
                (Feed::Tokens, _) => {
                    Tensor::from_shape(&[tokens.batch, tokens.seq], &tokens.tokens)
                }
                (Feed::Memory(i), Some(m)) => {
                    Tensor::from_shape(&[m.batch, m.mem_len, m.d_model], &m.layers[*i])
                }
                (Feed::Memory(_), None) => {
                    return Err(RuntimeError::NotXl("this XL model needs memory".into()));
                }
            };
            out.push(t.map_err(|e| execution(e))?.into_tvalue());
        }
        Ok(out)
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn vocab_size(&self) -> Option<usize> {
        self.vocab
    }

    fn run(
        &self,
        tokens: &TokenBatch,
        memory: Option<&XlMemory>,
    ) -> Result<BackendOutput, RuntimeError> {
        let inputs = self.inputs(tokens, memory)?;
        let outputs = multithread_tract_scope(self.executor.clone(), || self.plan.run(inputs))
            .map_err(execution)?;
        let vec = |ix: usize| -> Result<Vec<f32>, RuntimeError> {
            let t = outputs.get(ix).ok_or_else(|| interface("missing output"))?;
            Ok(t.try_as_plain_ram()
                .and_then(|v| v.as_slice::<f32>().map(<[f32]>::to_vec))
                .map_err(execution)?)
        };
        let logits = vec(self.logits_ix)?;
        let memory = self
            .memory_ix
            .iter()
            .map(|&ix| vec(ix))
            .collect::<Result<_, _>>()?;
        Ok(BackendOutput { logits, memory })
    }
}

fn input_feeds(model: &InferenceModel) -> Result<Vec<Feed>, RuntimeError> {
    let mut feeds = Vec::new();
    for outlet in model
        .input_outlets()
        .map_err(|e| prepare("reading inputs", e))?
    {
        let name = &model.node(outlet.node).name;
        let feed = match name.strip_prefix(MEMORY).map(str::parse::<usize>) {
            _ if name == TOKENS => Feed::Tokens,
            Some(Ok(i)) => Feed::Memory(i),
            _ => return Err(interface(&format!("unexpected model input {name:?}"))),
        };
        feeds.push(feed);
    }
    Ok(feeds)
}

/// tokens: i64 `[batch, seq]`; memory.i: f32 `[batch, mem_len, D]`.
fn set_input_facts(
    model: &mut InferenceModel,
    feeds: &[Feed],
    memory_d: Option<usize>,
) -> TractResult<()> {
    let batch = model.symbols.sym("batch").to_dim();
    let seq = model.symbols.sym("seq").to_dim();
    let mem_len = model.symbols.sym("mem_len").to_dim();
    for (ix, feed) in feeds.iter().enumerate() {
        let fact = match feed {
            Feed::Tokens => {
                InferenceFact::dt_shape(i64::datum_type(), tvec![batch.clone(), seq.clone()])
            }
            Feed::Memory(_) => {
                let d = memory_d.ok_or_else(|| {
                    tract_onnx::tract_hir::internal::anyhow!(
                        "memory inputs need a known last dimension"
                    )
                })?;
                InferenceFact::dt_shape(
                    f32::datum_type(),
                    tvec![batch.clone(), mem_len.clone(), d.to_dim()],
                )
            }
        };
        model.set_input_fact(ix, fact)?;
    }
    Ok(())
}

fn output_names(proto: &pb::ModelProto) -> Vec<String> {
    proto
        .graph
        .iter()
        .flat_map(|g| g.output.iter().map(|o| o.name.clone()))
        .collect()
}

/// Output indices of `memory_out.0 ..`, one per memory input.
fn memory_outputs(outputs: &[String], layers: usize) -> Result<Vec<usize>, RuntimeError> {
    (0..layers)
        .map(|i| {
            let name = format!("{MEMORY_OUT}{i}");
            outputs
                .iter()
                .position(|n| *n == name)
                .ok_or_else(|| interface(&format!("no {name} output")))
        })
        .collect()
}

fn executor(threads: usize) -> Result<Executor, RuntimeError> {
    if threads <= 1 {
        return Ok(Executor::SingleThread);
    }
    std::panic::catch_unwind(|| Executor::multithread_with_name(threads, "switchhead")).map_err(
        |_| RuntimeError::BackendUnavailable {
            backend: NAME,
            reason: format!("cannot start {threads} threads"),
        },
    )
}

fn prepare(stage: &str, e: impl std::fmt::Display + std::fmt::Debug) -> RuntimeError {
    RuntimeError::Prepare {
        backend: NAME,
        reason: format!("{stage}: {e:#}"),
    }
}

fn execution(e: impl std::fmt::Debug + std::fmt::Display) -> RuntimeError {
    RuntimeError::Execution {
        backend: NAME,
        reason: format!("{e:#}"),
    }
}

fn interface(reason: &str) -> RuntimeError {
    RuntimeError::Interface {
        reason: reason.into(),
    }
}
