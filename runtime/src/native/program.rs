//! A verified plan turned into what the executor walks: steps in order, each with the
//! values to free after it, and the interface's value ids.

use std::sync::Arc;

use switchhead_kernels::moe_attention::PositionKeyCache;
use switchhead_ops::op::{Merge, Op, PosEncoding};
use switchhead_ops::plan::{PlanDType, PlanFile, PlanMeta};

use crate::info::{LOGITS, MEMORY, MEMORY_OUT, TOKENS};

/// One node: op, input value ids, output value id, values dead after it.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<usize>,
    pub output: usize,
    /// Values whose last use is this step (never graph outputs or weights).
    pub free: Vec<usize>,
    /// An XL attention node's position keys, kept for the session's next passes.
    pub pos_keys: Option<Arc<PositionKeyCache>>,
}

/// The executable form of a plan.
#[derive(Debug, Clone)]
pub(crate) struct Program {
    pub n_values: usize,
    pub tokens: usize,
    /// Value id of `memory.{i}`, by layer.
    pub memory: Vec<usize>,
    pub logits: usize,
    /// Value id of `memory_out.{i}`, by layer.
    pub memory_out: Vec<usize>,
    /// For each value, the index of its weight, if it is one.
    pub weight_of: Vec<Option<usize>>,
    pub steps: Vec<Step>,
    pub meta: PlanMeta,
}

impl Program {
    /// Builds the program of a verified plan; errors name what the executor cannot run.
    pub fn new(plan: &PlanFile<'_>) -> Result<Program, String> {
        let g = &plan.graph;
        let n_values = g.n_values as usize;
        let input = |name: &str| g.inputs.iter().find(|i| i.name == name);
        let tokens = input(TOKENS).ok_or("no `tokens` input")?;
        if tokens.dtype != PlanDType::I64 {
            return Err("the `tokens` input is not i64".into());
        }
        let memory = numbered(g.inputs.iter().map(|i| (&i.name, i.value)), MEMORY)?;
        let memory_out = numbered(g.outputs.iter().map(|o| (&o.name, o.value)), MEMORY_OUT)?;
        if memory.len() != memory_out.len() {
            return Err(format!(
                "{} memory inputs but {} memory outputs",
                memory.len(),
                memory_out.len()
            ));
        }
        let logits = g
            .outputs
            .iter()
            .find(|o| o.name == LOGITS)
            .ok_or("no `logits` output")?
            .value as usize;
        let mut weight_of = vec![None; n_values];
        for (i, w) in g.weights.iter().enumerate() {
            weight_of[w.value as usize] = Some(i);
        }
        let mut keep: Vec<usize> = memory_out.clone();
        keep.push(logits);
        let steps = steps(plan, &weight_of, &keep)?;
        Ok(Program {
            n_values,
            tokens: tokens.value as usize,
            memory,
            logits,
            memory_out,
            weight_of,
            steps,
            meta: g.meta.clone(),
        })
    }
}

/// Values named `{prefix}{i}`, which must be numbered 0..n.
fn numbered<'a>(
    named: impl Iterator<Item = (&'a String, u32)>,
    prefix: &str,
) -> Result<Vec<usize>, String> {
    let mut found: Vec<(usize, usize)> = Vec::new();
    for (name, v) in named {
        if let Some(i) = name.strip_prefix(prefix) {
            let i = i
                .parse()
                .map_err(|_| format!("bad interface name {name:?}"))?;
            found.push((i, v as usize));
        }
    }
    found.sort_unstable();
    if found.iter().enumerate().any(|(n, (i, _))| n != *i) {
        return Err(format!(
            "{prefix}{{i}} values are not numbered 0..{}",
            found.len()
        ));
    }
    Ok(found.into_iter().map(|(_, v)| v).collect())
}

fn steps(
    plan: &PlanFile<'_>,
    weight_of: &[Option<usize>],
    keep: &[usize],
) -> Result<Vec<Step>, String> {
    let nodes = &plan.graph.nodes;
    let mut last_use = vec![None; weight_of.len()];
    for (s, n) in nodes.iter().enumerate() {
        n.inputs
            .iter()
            .for_each(|&v| last_use[v as usize] = Some(s));
    }
    nodes
        .iter()
        .enumerate()
        .map(|(s, n)| {
            let op = Op::from(&n.op);
            let inputs: Vec<usize> = n.inputs.iter().map(|&v| v as usize).collect();
            supported(&op, &inputs)
                .map_err(|r| format!("node {:?} ({}): {r}", n.name, op.name()))?;
            let mut free: Vec<usize> = inputs
                .iter()
                .copied()
                .filter(|&v| last_use[v] == Some(s) && weight_of[v].is_none() && !keep.contains(&v))
                .collect();
            free.dedup();
            let xl = matches!(&op, Op::MoEAttention(a) if a.pos == PosEncoding::Xl);
            Ok(Step {
                pos_keys: xl.then(|| Arc::new(PositionKeyCache::new())),
                name: n.name.clone(),
                op,
                inputs,
                output: n.outputs[0] as usize,
                free,
            })
        })
        .collect()
}

/// What the kernels support, checked at load so a run does not fail on it (or, for an
/// all-merged attention whose xq and xkv differ, compute something else).
fn supported(op: &Op, inputs: &[usize]) -> Result<(), String> {
    match op {
        Op::Softmax { axis } if *axis != -1 => Err(format!("axis {axis}: only -1 is supported")),
        Op::MoEAttention(a) if !a.causal => Err("only causal attention is supported".into()),
        Op::MoEAttention(a) if a.merged == Merge::All && inputs.first() != inputs.get(1) => {
            Err("merged \"all\" needs xq and xkv to be the same value".into())
        }
        Op::MoEAttention(a) => match a.pos {
            PosEncoding::Rope {
                rotate_fraction,
                base,
            } => switchhead_ops::rope::Rope::new(a.d_head, rotate_fraction, base)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            PosEncoding::Xl => Ok(()),
        },
        _ => Ok(()),
    }
}

impl Program {
    /// For each of the plan's `n_weights` weights, whether it stays f32 when the others go
    /// to bf16: embedding tables (a lookup, no product to speed up) and every weight holding
    /// router rows (the separate routers, and merged projections that include them): a gate
    /// rounded to bf16 flips near-tied expert choices, which moved `rope`'s logits by 5%
    /// against 0.1% with them in f32.
    pub fn kept_f32(&self, n_weights: usize) -> Vec<bool> {
        let mut keep = vec![false; n_weights];
        for s in &self.steps {
            for slot in kept_f32_slots(&s.op) {
                if let Some(i) = s.inputs.get(slot).and_then(|&v| self.weight_of[v])
                    && let Some(k) = keep.get_mut(i)
                {
                    *k = true;
                }
            }
        }
        keep
    }
}

/// The input slots of `op` whose weights stay f32 ([`Program::kept_f32`]).
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
