//! The CPU backend: tract, with our ops registered, typed with symbolic `batch`, `seq` and
//! `mem_len` and optimised once at load. Matrix products and our kernels run on a private
//! `threads`-wide pool, installed around each run (`multithread_tract_scope`), so sessions
//! with different thread counts do not interfere.

use tract_linalg::multithread::{Executor, multithread_tract_scope};
use tract_onnx::pb;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::DimLike;

use crate::info::{KvShape, LOGITS, MEMORY, MEMORY_OUT, PAST, PRESENT, TOKENS};
use crate::{KvCache, RuntimeError, TokenBatch, XlMemory};

use super::{Backend, BackendOutput};

const NAME: &str = "cpu";

/// What feeds a model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    Tokens,
    Memory(usize),
    /// `(layer, is_value)` of a KV-cache input.
    Past(usize, bool),
}

/// What one run is fed besides tokens.
#[derive(Clone, Copy)]
enum State<'a> {
    None,
    Memory(&'a XlMemory),
    Kv(&'a KvCache),
}

/// The tract CPU backend.
#[derive(Debug)]
pub struct CpuBackend {
    plan: Arc<TypedRunnableModel>,
    feeds: Vec<Feed>,
    logits_ix: usize,
    memory_ix: Vec<usize>,
    /// `(key, value)` output indices of `present.{i}.*`.
    present_ix: Vec<(usize, usize)>,
    kv: Option<KvShape>,
    vocab: Option<usize>,
    executor: Executor,
}

impl CpuBackend {
    /// Parses, types and optimises `proto` (external data resolved against `model_dir`).
    /// `kv` describes its KV-cache inputs, if any.
    pub fn prepare(
        proto: &pb::ModelProto,
        model_dir: Option<&str>,
        memory_d: Option<usize>,
        kv: Option<KvShape>,
        threads: usize,
    ) -> Result<Self, RuntimeError> {
        let framework = crate::onnx::switchhead_onnx();
        let mut model = framework
            .parse(proto, model_dir)
            .map_err(|e| prepare("parsing", e))?
            .model;
        let feeds = input_feeds(&model)?;
        set_input_facts(&mut model, &feeds, memory_d, kv)
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
        let present_ix = present_outputs(&outputs, kv.map_or(0, |k| k.layers))?;
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
            present_ix,
            kv,
            vocab,
            executor: executor(threads)?,
        })
    }

    fn inputs(&self, tokens: &TokenBatch, state: State<'_>) -> Result<TVec<TValue>, RuntimeError> {
        let empty = self
            .kv
            .map(|s| KvCache::empty(tokens.batch, s.heads, s.d_head, s.layers));
        let state = match (state, &empty) {
            (State::None, Some(e)) => State::Kv(e),
            (s, _) => s,
        };
        let mut out = TVec::new();
        for feed in &self.feeds {
            let t = match (feed, state) {
                (Feed::Tokens, _) => {
                    Tensor::from_shape(&[tokens.batch, tokens.seq], &tokens.tokens)
                }
                (Feed::Memory(i), State::Memory(m)) => {
                    Tensor::from_shape(&[m.batch, m.mem_len, m.d_model], &m.layers[*i])
                }
                (Feed::Past(i, value), State::Kv(c)) => {
                    let data = c
                        .compact_layer(*i, *value)
                        .ok_or_else(|| interface("the KV cache has too few layers"))?;
                    Tensor::from_shape(&[c.batch, c.heads, c.past, c.d_head], &data)
                }
                (Feed::Memory(_), _) => {
                    return Err(RuntimeError::NotXl("this XL model needs memory".into()));
                }
                (Feed::Past(..), _) => return Err(interface("this model needs a KV cache")),
            };
            out.push(t.map_err(execution)?.into_tvalue());
        }
        Ok(out)
    }

    fn execute(&self, inputs: TVec<TValue>) -> Result<TVec<TValue>, RuntimeError> {
        multithread_tract_scope(self.executor.clone(), || self.plan.run(inputs)).map_err(execution)
    }
}

/// Output `ix` as a flat f32 vector.
fn output_vec(outputs: &TVec<TValue>, ix: usize) -> Result<Vec<f32>, RuntimeError> {
    let t = outputs.get(ix).ok_or_else(|| interface("missing output"))?;
    t.try_as_plain_ram()
        .and_then(|v| v.as_slice::<f32>().map(<[f32]>::to_vec))
        .map_err(execution)
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
        let state = memory.map_or(State::None, State::Memory);
        let outputs = self.execute(self.inputs(tokens, state)?)?;
        let logits = output_vec(&outputs, self.logits_ix)?;
        let memory = self
            .memory_ix
            .iter()
            .map(|&ix| output_vec(&outputs, ix))
            .collect::<Result<_, _>>()?;
        Ok(BackendOutput { logits, memory })
    }

    fn run_kv(&self, tokens: &TokenBatch, cache: &mut KvCache) -> Result<Vec<f32>, RuntimeError> {
        let Some(kv) = self.kv else {
            return Err(interface("this model has no KV-cache inputs"));
        };
        cache.check(&kv)?;
        let outputs = self.execute(self.inputs(tokens, State::Kv(cache))?)?;
        let logits = output_vec(&outputs, self.logits_ix)?;
        let layers = self
            .present_ix
            .iter()
            .map(|&(k, v)| Ok((output_vec(&outputs, k)?, output_vec(&outputs, v)?)))
            .collect::<Result<_, RuntimeError>>()?;
        cache.past += tokens.seq;
        cache.capacity = cache.past;
        cache.layers = layers;
        Ok(logits)
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
            _ => past_feed(name)
                .ok_or_else(|| interface(&format!("unexpected model input {name:?}")))?,
        };
        feeds.push(feed);
    }
    Ok(feeds)
}

/// `past_key_values.{i}.key` -> `Past(i, false)`, `.value` -> `Past(i, true)`.
fn past_feed(name: &str) -> Option<Feed> {
    let (layer, part) = name.strip_prefix(PAST)?.split_once('.')?;
    let layer = layer.parse().ok()?;
    match part {
        "key" => Some(Feed::Past(layer, false)),
        "value" => Some(Feed::Past(layer, true)),
        _ => None,
    }
}

/// tokens: i64 `[batch, seq]`; memory.i: f32 `[batch, mem_len, D]`; past: f32
/// `[batch, heads, past, d_head]`.
fn set_input_facts(
    model: &mut InferenceModel,
    feeds: &[Feed],
    memory_d: Option<usize>,
    kv: Option<KvShape>,
) -> TractResult<()> {
    let batch = model.symbols.sym("batch").to_dim();
    let seq = model.symbols.sym("seq").to_dim();
    let mem_len = model.symbols.sym("mem_len").to_dim();
    let past = model.symbols.sym("past").to_dim();
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
            Feed::Past(..) => {
                let s = kv.ok_or_else(|| {
                    tract_onnx::tract_hir::internal::anyhow!("KV-cache inputs need their shape")
                })?;
                InferenceFact::dt_shape(
                    f32::datum_type(),
                    tvec![
                        batch.clone(),
                        s.heads.to_dim(),
                        past.clone(),
                        s.d_head.to_dim()
                    ],
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

/// Output indices of `present.{i}.key` / `.value`, one pair per KV-cache layer.
fn present_outputs(outputs: &[String], layers: usize) -> Result<Vec<(usize, usize)>, RuntimeError> {
    let find = |name: String| {
        outputs
            .iter()
            .position(|n| *n == name)
            .ok_or_else(|| interface(&format!("no {name} output")))
    };
    (0..layers)
        .map(|i| {
            Ok((
                find(format!("{PRESENT}{i}.key"))?,
                find(format!("{PRESENT}{i}.value"))?,
            ))
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
