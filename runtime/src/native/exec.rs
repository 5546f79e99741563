//! One run of a [`Program`]: a slot per value, steps in order, intermediates freed after
//! their last use, `Add` done in place when its left operand dies there.

use std::borrow::Cow;

use switchhead_kernels as k;
use switchhead_kernels::moe_attention::Dims;
use switchhead_ops::op::{AttentionVariant, Merge, MoeAttentionAttrs, Op, SigmaMoeAttrs};
use switchhead_ops::plan::PlanLayout;

use super::program::{Program, Step};
use super::weights::WeightStore;
use crate::backend::BackendOutput;
use crate::{KvCache, RuntimeError, TokenBatch, XlMemory};

/// An f32 activation: shape and data (borrowed for caller-provided memory).
#[derive(Debug)]
struct Act<'a> {
    shape: Vec<usize>,
    data: Cow<'a, [f32]>,
}

enum Slot<'a> {
    Empty,
    Tokens(&'a TokenBatch),
    Act(Act<'a>),
}

/// The KV caches a step appends to in place (each with room for the step's rows).
enum Caches<'a> {
    None,
    /// One cache for the whole batch (every row at the same position).
    One(&'a mut KvCache),
    /// One batch-1 cache per row: independent sequences, one new token each.
    Rows(Vec<&'a mut KvCache>),
}

/// A read-only operand: shape and elements.
type View<'s> = (&'s [usize], &'s [f32]);

struct Run<'a> {
    p: &'a Program,
    w: &'a WeightStore,
    slots: Vec<Slot<'a>>,
    threads: usize,
    /// The KV caches this step appends to (RoPE decoding).
    kv: Caches<'a>,
    /// Attention layers run so far (the cache layer of the next one).
    layer: usize,
}

/// Runs `p` on `tokens` (and XL `memory`, required when the program has memory inputs).
pub(crate) fn run(
    p: &Program,
    w: &WeightStore,
    tokens: &TokenBatch,
    memory: Option<&XlMemory>,
    threads: usize,
) -> Result<BackendOutput, RuntimeError> {
    run_with(p, w, tokens, memory, Caches::None, threads)
}

/// One KV-cache step of a RoPE program, appending to `cache` (which has room for it; its
/// `past` is the caller's to advance).
pub(crate) fn run_kv(
    p: &Program,
    w: &WeightStore,
    tokens: &TokenBatch,
    cache: &mut KvCache,
    threads: usize,
) -> Result<BackendOutput, RuntimeError> {
    run_with(p, w, tokens, None, Caches::One(cache), threads)
}

/// One step of independent sequences, one token each (`tokens` `[n, 1]`), `caches[r]` the
/// batch-1 cache of row r, each appended to (as [`run_kv`]).
pub(crate) fn run_kv_rows(
    p: &Program,
    w: &WeightStore,
    tokens: &TokenBatch,
    caches: &mut [&mut KvCache],
    threads: usize,
) -> Result<BackendOutput, RuntimeError> {
    let rows = caches.iter_mut().map(|c| &mut **c).collect();
    run_with(p, w, tokens, None, Caches::Rows(rows), threads)
}

fn run_with<'a>(
    p: &'a Program,
    w: &'a WeightStore,
    tokens: &'a TokenBatch,
    memory: Option<&'a XlMemory>,
    kv: Caches<'a>,
    threads: usize,
) -> Result<BackendOutput, RuntimeError> {
    let mut r = Run {
        p,
        w,
        slots: (0..p.n_values).map(|_| Slot::Empty).collect(),
        threads,
        kv,
        layer: 0,
    };
    r.slots[p.tokens] = Slot::Tokens(tokens);
    r.bind_memory(tokens, memory)?;
    let profiling = super::profile::enabled();
    for step in &p.steps {
        let start = profiling.then(std::time::Instant::now);
        let out = r
            .step(step)
            .map_err(|e| exec(format!("node {:?}: {e}", step.name)))?;
        if let Some(start) = start {
            super::profile::record(step.op.name(), start.elapsed());
        }
        r.slots[step.output] = Slot::Act(out);
        for &v in &step.free {
            r.slots[v] = Slot::Empty;
        }
    }
    let outputs: Vec<usize> = std::iter::once(p.logits)
        .chain(p.memory_out.iter().copied())
        .collect();
    let mut taken = outputs
        .iter()
        .enumerate()
        .map(|(i, &v)| r.take(v, outputs[i + 1..].contains(&v)))
        .collect::<Result<Vec<_>, _>>()?;
    let memory = taken.split_off(1);
    let logits = taken.pop().unwrap_or_default();
    Ok(BackendOutput { logits, memory })
}

fn exec(reason: String) -> RuntimeError {
    RuntimeError::Execution {
        backend: "native",
        reason,
    }
}

impl<'a> Run<'a> {
    fn bind_memory(
        &mut self,
        t: &TokenBatch,
        memory: Option<&'a XlMemory>,
    ) -> Result<(), RuntimeError> {
        if self.p.memory.is_empty() {
            return Ok(());
        }
        let m = memory.ok_or_else(|| exec("this XL plan needs memory inputs".into()))?;
        for (&v, layer) in self.p.memory.iter().zip(&m.layers) {
            self.slots[v] = Slot::Act(Act {
                shape: vec![t.batch, m.mem_len, m.d_model],
                data: Cow::Borrowed(layer),
            });
        }
        Ok(())
    }

    /// Output value `v` as an owned vector: moved out, or copied when a later output
    /// (`again`) is the same value.
    fn take(&mut self, v: usize, again: bool) -> Result<Vec<f32>, RuntimeError> {
        let missing = || exec(format!("output value {v} was not computed"));
        if again {
            return match &self.slots[v] {
                Slot::Act(a) => Ok(a.data.to_vec()),
                _ => Err(missing()),
            };
        }
        match std::mem::replace(&mut self.slots[v], Slot::Empty) {
            Slot::Act(a) => Ok(a.data.into_owned()),
            _ => Err(missing()),
        }
    }

    fn view(&self, v: usize) -> Result<View<'_>, String> {
        if let Some(i) = self.p.weight_of[v] {
            let data = self.w.data(i).ok_or_else(|| {
                format!("weight {i} is quantized where a plain f32 tensor was expected")
            })?;
            return Ok((self.w.shape(i), data));
        }
        match &self.slots[v] {
            Slot::Act(a) => Ok((&a.shape, &a.data)),
            _ => Err(format!("value {v} is not an f32 tensor here")),
        }
    }

    fn step(&mut self, s: &Step) -> Result<Act<'a>, String> {
        if s.op == Op::Add && s.free.contains(&s.inputs[0]) && s.inputs[0] != s.inputs[1] {
            let Slot::Act(mut a) = std::mem::replace(&mut self.slots[s.inputs[0]], Slot::Empty)
            else {
                return Err("Add operand is not a tensor".into());
            };
            let (_, b) = self.view(s.inputs[1])?;
            k::add_in_place(a.data.to_mut(), b, self.threads).map_err(|e| e.to_string())?;
            return Ok(a);
        }
        // the caches are taken out while the views borrow the rest of the run
        let mut kv = std::mem::replace(&mut self.kv, Caches::None);
        let out = self.attention_or_eval(s, &mut kv);
        self.kv = kv;
        out
    }

    /// Step `s` (not an in-place Add), appending to `kv` if it is a cached attention layer.
    fn attention_or_eval(&mut self, s: &Step, kv: &mut Caches<'a>) -> Result<Act<'a>, String> {
        let layer = self.layer;
        if matches!(s.op, Op::MoEAttention(_)) && !matches!(kv, Caches::None) {
            self.layer += 1;
        }
        let views = s
            .inputs
            .iter()
            .map(|&v| self.view_or_tokens(v))
            .collect::<Result<Vec<_>, _>>()?;
        match (&s.op, kv) {
            (Op::MoEAttention(a), Caches::One(cache)) => {
                attention_kv(a, &views, layer_slab(cache, layer)?, self.threads)
            }
            (Op::MoEAttention(a), Caches::Rows(caches)) => {
                let mut slabs = caches
                    .iter_mut()
                    .map(|c| layer_slab(c, layer))
                    .collect::<Result<Vec<_>, _>>()?;
                attention_kv_rows(a, &views, &mut slabs, self.threads)
            }
            _ => eval(s, &views, self.threads),
        }
    }

    fn view_or_tokens(&self, v: usize) -> Result<Operand<'_>, String> {
        if let Some(i) = self.p.weight_of[v]
            && let Some(w) = self.w.stored(i)
        {
            return Ok(Operand::Stored(self.w.shape(i), w, self.w.layout(i)));
        }
        match &self.slots[v] {
            Slot::Tokens(t) => Ok(Operand::Tokens(t)),
            _ => self.view(v).map(|(s, d)| Operand::F32(s, d)),
        }
    }
}

enum Operand<'s> {
    Tokens(&'s TokenBatch),
    F32(&'s [usize], &'s [f32]),
    /// A weight that is not plain row-major f32 (f32 in a packed layout, or quantized): its
    /// logical shape, the weight and its plan layout.
    Stored(&'s [usize], k::WeightRef<'s>, PlanLayout),
}

impl<'s> Operand<'s> {
    fn f32(&self) -> Result<View<'s>, String> {
        match *self {
            Operand::F32(s, d) => Ok((s, d)),
            Operand::Tokens(_) => Err("tokens where an f32 tensor was expected".into()),
            Operand::Stored(_, k::WeightRef::Packed(p), _) => Err(format!(
                "a {:?} weight where a plain tensor was expected",
                p.kind()
            )),
            Operand::Stored(_, _, l) => Err(format!(
                "a weight in {} where a plain tensor was expected",
                l.name()
            )),
        }
    }

    /// A projection weight: row-major, in `panels` or packed.
    fn weight(&self) -> Result<(&'s [usize], k::WeightRef<'s>), String> {
        self.stored(PlanLayout::Panels)
    }

    /// An expert stack: row-major, in `expert_panels` or packed.
    fn experts(&self) -> Result<(&'s [usize], k::WeightRef<'s>), String> {
        self.stored(PlanLayout::ExpertPanels)
    }

    fn stored(&self, packed: PlanLayout) -> Result<(&'s [usize], k::WeightRef<'s>), String> {
        match *self {
            Operand::Stored(s, w @ k::WeightRef::Packed(_), _) => Ok((s, w)),
            Operand::Stored(s, w, l) if l == packed => Ok((s, w)),
            _ => self.f32().map(|(s, d)| (s, k::WeightRef::row_major(d))),
        }
    }
}

fn act(shape: Vec<usize>, data: Vec<f32>) -> Act<'static> {
    Act {
        shape,
        data: Cow::Owned(data),
    }
}

fn with_last(shape: &[usize], last: usize) -> Vec<usize> {
    let mut s = shape.to_vec();
    if let Some(l) = s.last_mut() {
        *l = last;
    }
    s
}

fn last(shape: &[usize]) -> usize {
    shape.last().copied().unwrap_or(0)
}

fn rows(shape: &[usize]) -> usize {
    shape[..shape.len().saturating_sub(1)].iter().product()
}

/// One step that needs no state but its own (the KV-cache steps are [`Run::step`]'s).
fn eval(step: &Step, ins: &[Operand<'_>], threads: usize) -> Result<Act<'static>, String> {
    let f = |i: usize| ins[i].f32();
    let ke = |e: k::KernelError| e.to_string();
    match &step.op {
        Op::Embedding => embedding(ins),
        Op::LayerNorm { eps } => {
            let ((s, x), (_, w), (_, b)) = (f(0)?, f(1)?, f(2)?);
            let y = k::layer_norm(x, last(s), w, b, *eps, threads).map_err(ke)?;
            Ok(act(s.to_vec(), y))
        }
        Op::Linear { bias } => {
            let ((s, x), (ws, w)) = (f(0)?, ins[1].weight()?);
            let b = if *bias { Some(f(2)?.1) } else { None };
            let out = ws.first().copied().unwrap_or(0);
            let y = k::linear_with(x, rows(s), last(s), w, b, out, threads).map_err(ke)?;
            Ok(act(with_last(s, out), y))
        }
        Op::Add => {
            let ((s, a), (_, b)) = (f(0)?, f(1)?);
            let mut y = a.to_vec();
            k::add_in_place(&mut y, b, threads).map_err(ke)?;
            Ok(act(s.to_vec(), y))
        }
        Op::Relu => {
            let (s, x) = f(0)?;
            let mut y = x.to_vec();
            k::relu_in_place(&mut y);
            Ok(act(s.to_vec(), y))
        }
        Op::Softmax { .. } => {
            let (s, x) = f(0)?;
            let mut y = x.to_vec();
            k::softmax_rows(&mut y, last(s)).map_err(ke)?;
            Ok(act(s.to_vec(), y))
        }
        Op::ConcatSeq => concat(f(0)?, f(1)?),
        Op::DenseFfn => {
            let (s, x) = f(0)?;
            let ((w1s, w1), (_, w2)) = (ins[1].weight()?, ins[3].weight()?);
            let w = k::DenseFfnWeights {
                w1,
                b1: f(2)?.1,
                w2,
                b2: f(4)?.1,
                d_ff: w1s.first().copied().unwrap_or(0),
            };
            let y = k::dense_ffn(&w, x, rows(s), last(s), threads).map_err(ke)?;
            Ok(act(s.to_vec(), y))
        }
        Op::MoEAttention(a) => attention(a, ins, step.pos_keys.as_deref(), threads),
        Op::SigmaMoe(a) => sigma_moe(a, ins, threads),
    }
}

fn embedding(ins: &[Operand<'_>]) -> Result<Act<'static>, String> {
    let Operand::Tokens(t) = ins[0] else {
        return Err("Embedding expects the tokens input".into());
    };
    let (ts, table) = ins[1].f32()?;
    let [vocab, d] = ts[..] else {
        return Err(format!("embedding table shape {ts:?} is not [V, D]"));
    };
    let y = k::embedding(table, vocab, d, &t.tokens).map_err(|e| e.to_string())?;
    Ok(act(vec![t.batch, t.seq, d], y))
}

fn concat((sa, a): View<'_>, (sb, b): View<'_>) -> Result<Act<'static>, String> {
    let ([ba, m, da], [bb, t, db]) = (sa, sb) else {
        return Err(format!(
            "ConcatSeq expects rank-3 operands, got {sa:?} and {sb:?}"
        ));
    };
    if ba != bb || da != db {
        return Err(format!("ConcatSeq operands {sa:?} and {sb:?} differ"));
    }
    let y = k::concat_seq(a, *m, b, *t, *ba, *da).map_err(|e| e.to_string())?;
    Ok(act(vec![*ba, m + t, *da], y))
}

/// A whole-sequence attention step; `pos_keys`: the node's XL position-key cache.
fn attention(
    a: &MoeAttentionAttrs,
    ins: &[Operand<'_>],
    pos_keys: Option<&k::moe_attention::PositionKeyCache>,
    threads: usize,
) -> Result<Act<'static>, String> {
    let (mut weights, dims) = attention_inputs(a, ins)?;
    weights.pos_keys = pos_keys;
    let (xq, xkv) = (ins[0].f32()?.1, ins[1].f32()?.1);
    let y = k::moe_attention(a, &weights, xq, xkv, dims, threads).map_err(|e| e.to_string())?;
    Ok(act(vec![dims.batch, dims.t, dims.d], y))
}

/// Layer `layer` of `cache`, to append to.
fn layer_slab(cache: &mut KvCache, layer: usize) -> Result<k::KvSlab<'_>, String> {
    let (past, capacity) = (cache.past, cache.capacity);
    let (key, value) = cache
        .layers
        .get_mut(layer)
        .ok_or_else(|| format!("the KV cache has no layer {layer}"))?;
    Ok(k::KvSlab {
        key,
        value,
        past,
        capacity,
    })
}

/// One step of independent sequences through an attention layer, each `slabs[r]` appended
/// to: y `[n, 1, D]`.
fn attention_kv_rows(
    a: &MoeAttentionAttrs,
    ins: &[Operand<'_>],
    slabs: &mut [k::KvSlab<'_>],
    threads: usize,
) -> Result<Act<'static>, String> {
    let (weights, dims) = attention_inputs(a, ins)?;
    let x = ins[0].f32()?.1;
    let y = k::moe_attention_kv_rows(a, &weights, x, dims.d, slabs, threads)
        .map_err(|e| e.to_string())?;
    Ok(act(vec![dims.batch, dims.t, dims.d], y))
}

/// One KV-cache step of an attention layer, appended to `slab`: y.
fn attention_kv(
    a: &MoeAttentionAttrs,
    ins: &[Operand<'_>],
    slab: k::KvSlab<'_>,
    threads: usize,
) -> Result<Act<'static>, String> {
    let (weights, dims) = attention_inputs(a, ins)?;
    let x = ins[0].f32()?.1;
    let y = k::moe_attention_kv_in_place(a, &weights, x, dims, slab, threads)
        .map_err(|e| e.to_string())?;
    Ok(act(vec![dims.batch, dims.t, dims.d], y))
}

/// The weights and sizes of a `MoEAttention` step (inputs in `Op::MoEAttention` order).
fn attention_inputs<'s>(
    a: &MoeAttentionAttrs,
    ins: &[Operand<'s>],
) -> Result<(k::MoeAttentionWeights<'s>, Dims), String> {
    let (sq, _) = ins[0].f32()?;
    let (skv, _) = ins[1].f32()?;
    let ([batch, t, d], [_, tk, _]) = (sq, skv) else {
        return Err(format!(
            "MoEAttention expects rank-3 xq/xkv, got {sq:?}, {skv:?}"
        ));
    };
    let slots = a.slots();
    let weight = |i: Option<usize>| {
        let w = i.and_then(|i| ins.get(i)).map(|o| o.weight()).transpose();
        w.map(|w| w.map(|(_, w)| w))
    };
    let (_, q) = ins[slots.q].weight()?;
    let proj = if a.merged == Merge::All {
        k::Projections::Merged(q)
    } else if a.merged == Merge::Sides {
        let (_, kv) = ins[slots.k].weight()?;
        k::Projections::Sides { qo: q, kv }
    } else {
        k::Projections::Separate {
            q,
            k: ins[slots.k].weight()?.1,
            sel_v: weight(slots.sel_v)?,
            sel_o: weight(slots.sel_o)?,
        }
    };
    let stack = |i: usize| match a.variant {
        AttentionVariant::ExpertsVO => ins[i].experts(),
        _ => ins[i].weight(),
    };
    let weights = k::MoeAttentionWeights {
        proj,
        v: stack(slots.v)?.1,
        o: stack(slots.o)?.1,
        pos_to_pk: weight(slots.pos_to_pk)?,
        pos_keys: None,
    };
    let dims = Dims {
        batch: *batch,
        t: *t,
        tk: *tk,
        d: *d,
    };
    Ok((weights, dims))
}

fn sigma_moe(
    a: &SigmaMoeAttrs,
    ins: &[Operand<'_>],
    threads: usize,
) -> Result<Act<'static>, String> {
    let (s, x) = ins[0].f32()?;
    let w = k::SigmaMoeWeights {
        router: ins[1].weight()?.1,
        keys: ins[2].experts()?.1,
        values: ins[3].experts()?.1,
        experts: a.experts,
        expert_size: a.expert_size,
        k: a.k,
    };
    let y = k::sigma_moe(&w, x, rows(s), last(s), threads).map_err(|e| e.to_string())?;
    Ok(act(s.to_vec(), y))
}
