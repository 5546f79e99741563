//! The sigmoid top-k router and the grouping of routed (row, slot) pairs by expert.
//!
//! Numerics as `switchhead_ops::router`: `gate = sigmoid(float32(x @ sel^T))`, the top k of
//! each group's E gates, raw gates (not renormalised), flat ids `g*E + e`. The logits come
//! from the threaded projection (`sel` row-major or in panels) and are accumulated in f32 (the reference uses f64 and rounds to f32), so a selection can
//! differ from the reference only when two gates tie to within f32 rounding.

use crate::gemm::{Dispatch, Slots};
use crate::linear::project_rows;
use crate::parallel::par_map;
use crate::weight::WeightRef;

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

/// A router: `sel` (`[groups*experts, d]`), top `k` of each group's `experts` gates.
#[derive(Debug, Clone, Copy)]
pub struct Router<'a> {
    pub sel: WeightRef<'a>,
    pub groups: usize,
    pub experts: usize,
    pub k: usize,
}

/// Routes the `n` rows of `x` (`[n, d]`) with `r` on `threads`.
pub fn route(x: &[f32], n: usize, d: usize, r: Router<'_>, threads: usize) -> Routing {
    let width = r.groups * r.experts;
    let logits = project_rows(&x[..n * d], d, r.sel, width, threads);
    let row = |i: usize| &logits[i * width..(i + 1) * width];
    route_logits(row, n, (r.groups, r.experts, r.k), threads)
}

/// Rows per thread from which the selection runs on more than one thread.
const ROUTE_ROWS: usize = 64;

/// Routes `n` rows of logits (`row(i)`: `groups * experts` of them): sigmoid, then the top
/// `k` of each group's `experts` gates; rows split across `threads`.
pub(crate) fn route_logits<'a>(
    row: impl Fn(usize) -> &'a [f32] + Sync,
    n: usize,
    (groups, experts, k): (usize, usize, usize),
    threads: usize,
) -> Routing {
    let parts = threads.min(n / ROUTE_ROWS).max(1);
    let chunks = par_map(threads, parts, |part| {
        let rows = (n * part / parts)..(n * (part + 1) / parts);
        let mut idx = Vec::with_capacity(rows.len() * groups * k);
        let mut gate = Vec::with_capacity(rows.len() * groups * k);
        let mut top = Vec::with_capacity(experts);
        for r in rows {
            let logits = row(r);
            for g in 0..groups {
                let base = g * experts;
                let group = &logits[base..base + experts];
                select_top_k(group, k, &mut top, |e, v| {
                    idx.push((base + e) as u32);
                    gate.push(v);
                });
            }
        }
        (idx, gate)
    });
    let mut routing = Routing {
        groups,
        k,
        idx: Vec::with_capacity(n * groups * k),
        gate: Vec::with_capacity(n * groups * k),
    };
    for (idx, gate) in chunks {
        routing.idx.extend(idx);
        routing.gate.extend(gate);
    }
    routing
}

/// A router gate: `float32(sigmoid(l))`, computed in f64 as the reference does.
fn gate(logit: f32) -> f32 {
    switchhead_ops::sigmoid(logit as f64) as f32
}

/// Calls `emit(index, gate)` for the k largest gates of one group's `logits`, descending,
/// ties to the lower index: what sorting every expert's gate would give. The sigmoid never
/// decreases, so the k largest logits name the k largest gates unless rounding to f32 ties
/// the next logit's gate to the smallest of theirs; then (rarely) every gate is sorted. So a
/// group takes one pass over its logits and k + 1 gates, not one per expert (32 for σ-MoE
/// at `switchall-259m`). `top` is scratch.
fn select_top_k(
    logits: &[f32],
    k: usize,
    top: &mut Vec<(usize, f32)>,
    mut emit: impl FnMut(usize, f32),
) {
    let k = k.min(logits.len());
    let keep = (k + 1).min(logits.len());
    // the `keep` largest logits, descending, ties to the lower index
    top.clear();
    for (i, &l) in logits.iter().enumerate() {
        if top.len() == keep && !top.last().is_some_and(|&(_, c)| l.total_cmp(&c).is_gt()) {
            continue;
        }
        top.truncate(keep - 1);
        let at = top.iter().position(|&(_, c)| l.total_cmp(&c).is_gt());
        top.insert(at.unwrap_or(top.len()), (i, l));
    }
    top.iter_mut().for_each(|(_, v)| *v = gate(*v));
    if keep > k && k > 0 && top[k].1.total_cmp(&top[k - 1].1).is_ge() {
        // the next gate ties the k-th: sort them all
        top.clear();
        top.extend(logits.iter().map(|&l| gate(l)).enumerate());
    }
    top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    top.iter().take(k).for_each(|&(i, g)| emit(i, g));
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The top k by sorting every expert's gate (descending, ties to the lower index).
    fn by_sorting(logits: &[f32], k: usize) -> Vec<(usize, f32)> {
        let mut all: Vec<(usize, f32)> = logits.iter().map(|&l| gate(l)).enumerate().collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(k);
        all
    }

    /// Logits of one group: spread out, drawn from a few values (exact ties), or large
    /// enough that different logits round to the same gate (1.0, or one tiny value).
    fn group(rng: &mut ChaCha8Rng, experts: usize, kind: usize) -> Vec<f32> {
        (0..experts)
            .map(|_| match kind {
                0 => rng.random_range(-4.0..4.0),
                1 => [-1.0, 0.0, 0.5, 2.0][rng.random_range(0..4)],
                2 => rng.random_range(17.0..40.0),
                _ => [rng.random_range(17.0..40.0), rng.random_range(-3.0..3.0)]
                    [rng.random_range(0..2)],
            })
            .collect()
    }

    /// Selecting on the logits and computing only the candidates' gates gives exactly what
    /// sorting every gate gives, ties and saturated gates included.
    #[test]
    fn top_k_matches_sorting_every_gate() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut scratch = Vec::new();
        for experts in [1usize, 2, 4, 5, 8, 32, 64] {
            for k in 1..=experts.min(6) {
                for kind in 0..4 {
                    for _ in 0..50 {
                        let logits = group(&mut rng, experts, kind);
                        let mut got = Vec::new();
                        select_top_k(&logits, k, &mut scratch, |i, g| got.push((i, g)));
                        assert_eq!(got, by_sorting(&logits, k), "{logits:?} k {k}");
                    }
                }
            }
        }
    }

    /// Routing split across threads gives the same routing as one thread, in row order.
    #[test]
    fn route_logits_same_on_any_thread_count() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let (n, groups, experts, k) = (300, 4, 5, 2);
        let logits: Vec<f32> = (0..n * groups * experts)
            .map(|_| rng.random_range(-3.0..3.0))
            .collect();
        let row = |i: usize| &logits[i * groups * experts..(i + 1) * groups * experts];
        let one = route_logits(row, n, (groups, experts, k), 1);
        assert_eq!(one.idx.len(), n * groups * k);
        for threads in [2, 3, 5] {
            assert_eq!(route_logits(row, n, (groups, experts, k), threads), one);
        }
        let first: Vec<u32> = by_sorting(row(0)[..experts].as_ref(), k)
            .iter()
            .map(|&(i, _)| i as u32)
            .collect();
        assert_eq!(one.idx[..k], first[..]);
    }
}
