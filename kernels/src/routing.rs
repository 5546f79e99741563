//! The sigmoid top-k router and the grouping of routed (row, slot) pairs by expert.
//!
//! Numerics as `switchhead_ops::router`: `gate = sigmoid(float32(x @ sel^T))`, the top k of
//! each group's E gates, raw gates (not renormalised), flat ids `g*E + e`. The logits come
//! from the threaded projection (`sel` row-major or in panels) and are accumulated in f32 (the reference uses f64 and rounds to f32), so a selection can
//! differ from the reference only when two gates tie to within f32 rounding.

use crate::gemm::{Dispatch, Slots};
use crate::linear::{WeightLayout, project_rows};

/// Routing decisions for `n` rows: `[n, groups, k]` flat expert ids and gates.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    /// Groups (heads) per row.
    pub groups: usize,
    /// Selected experts per group.
    pub k: usize,
    /// Flat expert ids, `[n, groups, k]`.
    pub idx: Vec<u32>,
    /// Gates of the selected experts, same layout.
    pub gate: Vec<f32>,
}

impl Routing {
    /// The row a slot index (`(row*groups + g)*k + j`) belongs to.
    pub fn row_of(&self, slot: usize) -> usize {
        slot / (self.groups * self.k)
    }

    /// The group (head) of a slot index.
    pub fn group_of(&self, slot: usize) -> usize {
        (slot / self.k) % self.groups
    }
}

/// A router: `sel` (`[groups*experts, d]`, stored in `layout`), top `k` of each group's
/// `experts` gates.
#[derive(Debug, Clone, Copy)]
pub struct Router<'a> {
    pub sel: &'a [f32],
    pub layout: WeightLayout,
    pub groups: usize,
    pub experts: usize,
    pub k: usize,
}

/// Routes the `n` rows of `x` (`[n, d]`) with `r`; the logits product runs on `threads`.
pub fn route(x: &[f32], n: usize, d: usize, r: Router<'_>, threads: usize) -> Routing {
    let width = r.groups * r.experts;
    let logits = project_rows(&x[..n * d], d, (r.sel, r.layout), width, threads);
    route_logits(logits.chunks_exact(width.max(1)), r.groups, r.experts, r.k)
}

/// Routes rows of logits (`groups * experts` each): sigmoid, then the top `k` of each
/// group's `experts` gates.
pub(crate) fn route_logits<'a>(
    rows: impl ExactSizeIterator<Item = &'a [f32]>,
    groups: usize,
    experts: usize,
    k: usize,
) -> Routing {
    let n = rows.len();
    let mut routing = Routing {
        groups,
        k,
        idx: Vec::with_capacity(n * groups * k),
        gate: Vec::with_capacity(n * groups * k),
    };
    let mut gates = vec![0f32; groups * experts];
    for row in rows {
        gates
            .iter_mut()
            .zip(row)
            .for_each(|(g, &l)| *g = switchhead_ops::sigmoid(l as f64) as f32);
        for g in 0..groups {
            let base = g * experts;
            select_top_k(&gates[base..base + experts], k, |e| {
                routing.idx.push((base + e) as u32);
                routing.gate.push(gates[base + e]);
            });
        }
    }
    routing
}

/// Calls `emit` with the indices of the k largest values, descending (ties: lower index).
fn select_top_k(values: &[f32], k: usize, mut emit: impl FnMut(usize)) {
    let mut taken = 0u64;
    for _ in 0..k.min(values.len()) {
        let mut best: Option<usize> = None;
        for (i, v) in values.iter().enumerate() {
            let free = i >= 64 || taken & (1 << i) == 0;
            if free && best.is_none_or(|b| v.total_cmp(&values[b]).is_gt()) {
                best = Some(i);
            }
        }
        let Some(b) = best else { return };
        if b < 64 {
            taken |= 1 << b;
        }
        emit(b);
    }
}

/// The slots of a routing grouped by expert: `slots[offsets[g]..offsets[g+1]]` are group
/// g's, all of one expert (group e is expert e, unless `experts` names each group's).
#[derive(Debug, Clone)]
pub struct ExpertGroups {
    /// `groups + 1` offsets into `slots`.
    pub offsets: Vec<usize>,
    /// Slot indices (`(row*groups + g)*k + j`), ascending within each group.
    pub slots: Vec<usize>,
    /// The expert of each group; `None`: group e is expert e.
    pub experts: Option<Vec<u32>>,
}

impl ExpertGroups {
    /// The slots of `routing` grouped by expert id (`n_experts` of them). One row (a decode
    /// step at batch 1) takes a path without sorting: its slots all go to distinct experts,
    /// so each slot is a group of its own, in slot order. More rows: a counting sort by
    /// expert id (no comparisons).
    pub fn new(routing: &Routing, n_experts: usize) -> Self {
        if routing.idx.len() <= routing.groups * routing.k {
            return Self::single_row(routing);
        }
        let mut offsets = vec![0usize; n_experts + 1];
        for &e in &routing.idx {
            offsets[e as usize + 1] += 1;
        }
        for e in 0..n_experts {
            offsets[e + 1] += offsets[e];
        }
        let mut next = offsets.clone();
        let mut slots = vec![0usize; routing.idx.len()];
        for (slot, &e) in routing.idx.iter().enumerate() {
            slots[next[e as usize]] = slot;
            next[e as usize] += 1;
        }
        ExpertGroups {
            offsets,
            slots,
            experts: None,
        }
    }

    /// One row's slots, one group each, in slot order.
    fn single_row(routing: &Routing) -> Self {
        let n = routing.idx.len();
        ExpertGroups {
            offsets: (0..=n).collect(),
            slots: (0..n).collect(),
            experts: Some(routing.idx.clone()),
        }
    }

    /// The grouped product's view of these groups with per-slot addressing `slots`.
    pub(crate) fn dispatch<'a>(&'a self, slots: Slots<'a>) -> Dispatch<'a> {
        Dispatch {
            offsets: &self.offsets,
            experts: self.experts.as_deref(),
            slots,
        }
    }
}

/// Per-slot addressing of a grouped expert product, in the groups' (expert) order: where each
/// slot's input row starts, where its output row starts, and its gate.
#[derive(Debug, Clone, Default)]
pub(crate) struct SlotTable {
    pub src: Vec<usize>,
    pub dst: Vec<usize>,
    pub gate: Vec<f32>,
}

impl SlotTable {
    /// The table of `groups`' slots, `src(slot)` / `dst(slot)` giving the row offsets.
    pub fn new(
        groups: &ExpertGroups,
        routing: &Routing,
        src: impl Fn(usize) -> usize,
        dst: impl Fn(usize) -> usize,
    ) -> Self {
        SlotTable {
            src: groups.slots.iter().map(|&s| src(s)).collect(),
            dst: groups.slots.iter().map(|&s| dst(s)).collect(),
            gate: groups.slots.iter().map(|&s| routing.gate[s]).collect(),
        }
    }

    /// The grouped product's view of the table (`gated`: apply the gates, else 1).
    pub fn slots(&self, gated: bool) -> Slots<'_> {
        Slots {
            src: &self.src,
            dst: &self.dst,
            gate: gated.then_some(&self.gate[..]),
        }
    }
}
