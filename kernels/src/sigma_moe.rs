//! `SigmaMoE`: the σ-MoE feed-forward block (SPEC.md section 3), over all rows at once.
//!
//! Route every row (one group of N_E experts, top K_ff), group the (row, slot) pairs by
//! expert, then two grouped expert products: each slot's hidden row `relu(x @ keys[e])`,
//! and `gate * (hidden @ values[e])` added straight into the slot's row. Matches `switchhead_ops::sigma_moe::sigma_moe`.

use crate::KernelError;
use crate::error::check_len;
use crate::gemm::{Experts, grouped_gemm};
use crate::routing::{ExpertGroups, Router, SlotTable, route};
use crate::weight::WeightRef;

/// Weights of one σ-MoE block (the stacks as [`WeightRef`] says of expert stacks).
#[derive(Debug, Clone, Copy)]
pub struct SigmaMoeWeights<'a> {
    /// `[N_E, D]`.
    pub router: WeightRef<'a>,
    /// `[N_E, D, G]`.
    pub keys: WeightRef<'a>,
    /// `[N_E, G, D]`.
    pub values: WeightRef<'a>,
    /// N_E.
    pub experts: usize,
    /// G.
    pub expert_size: usize,
    /// K_ff.
    pub k: usize,
}

/// Runs the block on `rows` rows of `x` (`[rows, d]`); returns `[rows, d]`.
pub fn sigma_moe(
    w: &SigmaMoeWeights<'_>,
    x: &[f32],
    rows: usize,
    d: usize,
    threads: usize,
) -> Result<Vec<f32>, KernelError> {
    validate(w, x, rows, d)?;
    let (n_e, g) = (w.experts, w.expert_size);
    let router = Router {
        sel: w.router,
        groups: 1,
        experts: n_e,
        k: w.k,
    };
    let routing = route(x, rows, d, router, threads);
    let groups = ExpertGroups::new(&routing, n_e);
    // keys: each slot's own hidden row (position i in expert order), no gate
    let keys = SlotTable::new(&groups, &routing, |slot| routing.row_of(slot) * d, |_| 0);
    let n_slots = keys.src.len();
    let dst: Vec<usize> = (0..n_slots).map(|i| i * g).collect();
    let hidden_slots = crate::gemm::Slots {
        dst: &dst,
        ..keys.slots(false)
    };
    let mut hidden = vec![0f32; n_slots * g];
    let dispatch = groups.dispatch(hidden_slots);
    grouped_gemm(
        x,
        &dispatch,
        Experts {
            w: w.keys,
            inp: d,
            out: g,
        },
        &mut hidden,
        threads,
    );
    hidden.iter_mut().for_each(|v| *v = v.max(0.0));
    // values: gate * (hidden row @ values[e]) into the slot's row
    let values = SlotTable {
        src: dst,
        dst: groups
            .slots
            .iter()
            .map(|&s| routing.row_of(s) * d)
            .collect(),
        gate: keys.gate,
    };
    let mut y = vec![0f32; rows * d];
    let dispatch = groups.dispatch(values.slots(true));
    grouped_gemm(
        &hidden,
        &dispatch,
        Experts {
            w: w.values,
            inp: g,
            out: d,
        },
        &mut y,
        threads,
    );
    Ok(y)
}

fn validate(w: &SigmaMoeWeights<'_>, x: &[f32], rows: usize, d: usize) -> Result<(), KernelError> {
    let (n_e, g) = (w.experts, w.expert_size);
    if n_e == 0 || w.k == 0 || w.k > n_e || n_e > 64 || d == 0 {
        let reason = format!(
            "need 1 <= k ({}) <= experts ({n_e}) <= 64 and d_model > 0",
            w.k
        );
        return Err(KernelError::attr("SigmaMoE", "k", reason));
    }
    check_len("SigmaMoE x", x, rows * d)?;
    w.router.check("SigmaMoE router", 1, n_e, d)?;
    w.keys.check("SigmaMoE keys", n_e, g, d)?;
    w.values.check("SigmaMoE values", n_e, d, g)
}
