//! How a weight's elements are ordered in the file.
//!
//! `row_major` is the checkpoint's order. `panels` is the order the CPU matrix kernels stream a
//! `[out, in]` projection weight in, chosen at compile time so the runtime reads it in place
//! with no packing: the output rows are cut into panels of [`PANEL`] rows (the last one zero
//! padded), and each panel is stored input-major, so element `(o, i)` of the weight is at
//! `(o / PANEL) * in * PANEL + i * PANEL + o % PANEL`. That is `x @ w^T` for one panel as
//! `in` rank-1 updates of [`PANEL`] contiguous floats.

use serde::{Deserialize, Serialize};

use crate::op::{Op, PosEncoding};

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
            (PlanLayout::Panels, _) => None,
        }
    }
}

/// Whether input `slot` of `op` (a node with `arity` inputs) may be stored in panels: the
/// `[out, in]` projections the CPU kernels stream panel by panel. The weight of `Linear`,
/// `w1`/`w2` of `DenseFfn`, and `q`, `k` and (XL) `pos_to_pk` of `MoEAttention`.
pub fn reads_panels(op: &Op, slot: usize, arity: usize) -> bool {
    match op {
        Op::Linear { .. } => slot == 1,
        Op::DenseFfn => slot == 1 || slot == 3,
        Op::MoEAttention(a) => {
            slot == 2 || slot == 3 || (a.pos == PosEncoding::Xl && slot + 1 == arity)
        }
        _ => false,
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
}
