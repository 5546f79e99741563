//! `SigmaMoE`: the σ-MoE feed-forward block (SPEC.md section 3), over all rows at once.
//!
//! Route every row (one group of N_E experts, top K_ff), group the (row, slot) pairs by
//! expert, and per expert: gather its rows, `relu(x @ keys[e]) @ values[e]`, then add
//! `gate * result` to each row. Matches `switchhead_ops::sigma_moe::sigma_moe`.

use crate::KernelError;
use crate::error::check_len;
use crate::gemm::{Mat, gemm};
use crate::parallel::par_map;
use crate::routing::{ExpertGroups, gather_block, route};

/// Weights of one σ-MoE block, row-major.
#[derive(Debug, Clone, Copy)]
pub struct SigmaMoeWeights<'a> {
    /// `[N_E, D]`.
    pub router: &'a [f32],
    /// `[N_E, D, G]`.
    pub keys: &'a [f32],
    /// `[N_E, G, D]`.
    pub values: &'a [f32],
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
    let routing = route(x, rows, d, w.router, 1, n_e, w.k);
    let groups = ExpertGroups::new(&routing, n_e);
    let gather = |slot: usize, dst: &mut [f32]| {
        let row = routing.row_of(slot);
        dst.copy_from_slice(&x[row * d..(row + 1) * d]);
    };
    let products = par_map(threads.max(1), n_e, |e| {
        let slots = groups.slots_of(e);
        let block = gather_block(slots, &gather, d);
        let mut hidden = vec![0f32; slots.len() * g];
        let keys = &w.keys[e * d * g..(e + 1) * d * g];
        gemm(
            Mat::rows(&block, slots.len(), d),
            Mat::rows(keys, d, g),
            &mut hidden,
            g,
            0.0,
        );
        hidden.iter_mut().for_each(|v| *v = v.max(0.0));
        let mut out = vec![0f32; slots.len() * d];
        let values = &w.values[e * g * d..(e + 1) * g * d];
        gemm(
            Mat::rows(&hidden, slots.len(), g),
            Mat::rows(values, g, d),
            &mut out,
            d,
            0.0,
        );
        out
    });
    let mut y = vec![0f32; rows * d];
    for (e, prod) in products.iter().enumerate() {
        for (&slot, src) in groups.slots_of(e).iter().zip(prod.chunks_exact(d.max(1))) {
            let row = routing.row_of(slot);
            let gate = routing.gate[slot];
            y[row * d..(row + 1) * d]
                .iter_mut()
                .zip(src)
                .for_each(|(o, &p)| *o += gate * p);
        }
    }
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
    check_len("SigmaMoE router", w.router, n_e * d)?;
    check_len("SigmaMoE keys", w.keys, n_e * d * g)?;
    check_len("SigmaMoE values", w.values, n_e * g * d)
}
