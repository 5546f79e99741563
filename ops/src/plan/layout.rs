//! How a weight's elements are ordered in the file.
//!
//! `row_major` is the checkpoint's order. `panels` is the order the CPU matrix kernels stream a
//! `[out, in]` projection weight in, chosen at compile time so the runtime reads it in place
//! with no packing: the output rows are cut into panels of [`PANEL`] rows (the last one zero
//! padded), and each panel is stored input-major, so element `(o, i)` of the weight is at
//! `(o / PANEL) * in * PANEL + i * PANEL + o % PANEL`. That is `x @ w^T` for one panel as
//! `in` rank-1 updates of [`PANEL`] contiguous floats.
//!
//! `expert_panels` is the same order for stacked expert matrices: a rank-3 `[E, in, out]`
//! weight (each expert an `[in, out]` matrix applied as `x @ W_e`, as SwitchHead's V and O
//! experts and σ-MoE's keys and values) stores each expert, one after the other, as the
//! `panels` layout of its `[out, in]` transpose: element `(e, i, o)` is at
//! `e * P + (o / PANEL) * in * PANEL + i * PANEL + o % PANEL`, `P = ceil(out / PANEL) * PANEL * in`.

use serde::{Deserialize, Serialize};

use crate::op::{AttentionVariant, Op};

/// Output rows per panel of the `panels` layout (two 16-lane vectors).
pub const PANEL: usize = 32;

/// Element order of a stored weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanLayout {
    /// The checkpoint's row-major order.
    #[default]
    RowMajor,
    /// A rank-2 `[out, in]` weight in panels of [`PANEL`] output rows, input-major inside.
    Panels,
    /// A rank-3 `[E, in, out]` stack of expert matrices, each in the `panels` layout of its
    /// `[out, in]` transpose.
    ExpertPanels,
}

impl PlanLayout {
    /// Whether this is the default (`row_major`, omitted from the JSON).
    pub fn is_row_major(&self) -> bool {
        *self == PlanLayout::RowMajor
    }

    /// Number of stored elements of a weight of logical `shape` (None: the layout does not
    /// apply to that shape, or the count overflows).
    pub fn stored_len(self, shape: &[usize]) -> Option<usize> {
        match (self, shape) {
            (PlanLayout::RowMajor, _) => shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)),
            (PlanLayout::Panels, &[out, inp]) => {
                out.div_ceil(PANEL).checked_mul(PANEL)?.checked_mul(inp)
            }
            (PlanLayout::ExpertPanels, &[experts, inp, out]) => PlanLayout::Panels
                .stored_len(&[out, inp])?
                .checked_mul(experts),
            (PlanLayout::Panels | PlanLayout::ExpertPanels, _) => None,
        }
    }

    /// The layout's name in the JSON and in `inspect`.
    pub fn name(self) -> &'static str {
        match self {
            PlanLayout::RowMajor => "row_major",
            PlanLayout::Panels => "panels",
            PlanLayout::ExpertPanels => "expert_panels",
        }
    }
}

/// The packed layout input `slot` of `op` may be stored in, if
/// any: `panels` for the `[out, in]` projections the CPU kernels stream panel by panel (the
/// weight of `Linear`, `w1`/`w2` of `DenseFfn`; `q`, `k`, the routers and (XL) `pos_to_pk`
/// of `MoEAttention`; the router of `SigmaMoE`); `expert_panels` for the expert stacks of the
/// grouped expert products (`v` and `o` of an `experts_vo` `MoEAttention`, `keys` and
/// `values` of `SigmaMoE`).
pub fn packed_layout(op: &Op, slot: usize) -> Option<PlanLayout> {
    let (panels, experts) = match op {
        Op::Linear { .. } => (slot == 1, false),
        Op::DenseFfn => (slot == 1 || slot == 3, false),
        Op::MoEAttention(a) => {
            let s = a.slots();
            let routed = a.variant == AttentionVariant::ExpertsVO;
            let proj = [Some(s.q), Some(s.k), s.sel_v, s.sel_o, s.pos_to_pk];
            (
                proj.contains(&Some(slot)),
                routed && (slot == s.v || slot == s.o),
            )
        }
        Op::SigmaMoe(_) => (slot == 1, slot == 2 || slot == 3),
        _ => (false, false),
    };
    if experts {
        Some(PlanLayout::ExpertPanels)
    } else {
        panels.then_some(PlanLayout::Panels)
    }
}

/// A row-major `[out, in]` weight in the `panels` layout.
pub fn to_panels(w: &[f32], out: usize, inp: usize) -> Vec<f32> {
    let mut packed = vec![0f32; out.div_ceil(PANEL) * PANEL * inp];
    for (o, row) in w.chunks_exact(inp.max(1)).take(out).enumerate() {
        let panel = &mut packed[(o / PANEL) * inp * PANEL..];
        for (i, &v) in row.iter().enumerate() {
            panel[i * PANEL + o % PANEL] = v;
        }
    }
    packed
}

/// The row-major `[out, in]` weight of a `panels` one (the inverse of [`to_panels`]).
pub fn from_panels(packed: &[f32], out: usize, inp: usize) -> Vec<f32> {
    let mut w = vec![0f32; out * inp];
    for (o, row) in w.chunks_exact_mut(inp.max(1)).enumerate() {
        let panel = &packed[(o / PANEL) * inp * PANEL..];
        for (i, v) in row.iter_mut().enumerate() {
            *v = panel[i * PANEL + o % PANEL];
        }
    }
    w
}

/// A row-major `[experts, in, out]` expert stack in the `expert_panels` layout.
pub fn to_expert_panels(w: &[f32], experts: usize, inp: usize, out: usize) -> Vec<f32> {
    let per = out.div_ceil(PANEL) * PANEL * inp;
    let mut packed = vec![0f32; experts * per];
    for (src, dst) in w
        .chunks_exact((inp * out).max(1))
        .zip(packed.chunks_exact_mut(per.max(1)))
    {
        for (i, row) in src.chunks_exact(out.max(1)).enumerate() {
            for (o, &v) in row.iter().enumerate() {
                dst[(o / PANEL) * inp * PANEL + i * PANEL + o % PANEL] = v;
            }
        }
    }
    packed
}

/// The row-major `[experts, in, out]` stack of an `expert_panels` one (the inverse of
/// [`to_expert_panels`]).
pub fn from_expert_panels(packed: &[f32], experts: usize, inp: usize, out: usize) -> Vec<f32> {
    let per = out.div_ceil(PANEL) * PANEL * inp;
    let mut w = vec![0f32; experts * inp * out];
    for (dst, src) in w
        .chunks_exact_mut((inp * out).max(1))
        .zip(packed.chunks_exact(per.max(1)))
    {
        for (i, row) in dst.chunks_exact_mut(out.max(1)).enumerate() {
            for (o, v) in row.iter_mut().enumerate() {
                *v = src[(o / PANEL) * inp * PANEL + i * PANEL + o % PANEL];
            }
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_round_trip_and_pad() {
        for (out, inp) in [(1, 1), (5, 3), (32, 7), (33, 4), (70, 9)] {
            let w: Vec<f32> = (0..out * inp).map(|i| i as f32 + 1.0).collect();
            let p = to_panels(&w, out, inp);
            assert_eq!(Some(p.len()), PlanLayout::Panels.stored_len(&[out, inp]));
            assert_eq!(from_panels(&p, out, inp), w);
            // element (o, i) where the module doc says
            let (o, i) = (out - 1, inp - 1);
            assert_eq!(
                p[(o / PANEL) * inp * PANEL + i * PANEL + o % PANEL],
                w[o * inp + i]
            );
            // padding rows are zero
            let nonzero = p.iter().filter(|&&v| v != 0.0).count();
            assert_eq!(nonzero, out * inp);
        }
        assert_eq!(PlanLayout::Panels.stored_len(&[3]), None);
    }

    #[test]
    fn expert_panels_round_trip_and_pad() {
        for (e, inp, out) in [(1, 1, 1), (3, 5, 7), (2, 4, 33), (4, 9, 76)] {
            let w: Vec<f32> = (0..e * inp * out).map(|i| i as f32 + 1.0).collect();
            let p = to_expert_panels(&w, e, inp, out);
            assert_eq!(
                Some(p.len()),
                PlanLayout::ExpertPanels.stored_len(&[e, inp, out])
            );
            assert_eq!(from_expert_panels(&p, e, inp, out), w);
            // element (e, i, o) where the module doc says
            let (x, i, o) = (e - 1, inp - 1, out - 1);
            let per = out.div_ceil(PANEL) * PANEL * inp;
            assert_eq!(
                p[x * per + (o / PANEL) * inp * PANEL + i * PANEL + o % PANEL],
                w[(x * inp + i) * out + o]
            );
            // each expert is the panels layout of its transpose
            let first: Vec<f32> = (0..out * inp)
                .map(|j| w[(j % inp) * out + j / inp])
                .collect();
            assert_eq!(&p[..per], &to_panels(&first, out, inp)[..]);
            assert_eq!(p.iter().filter(|&&v| v != 0.0).count(), e * inp * out);
        }
        assert_eq!(PlanLayout::ExpertPanels.stored_len(&[3, 4]), None);
    }
}
