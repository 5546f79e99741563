//! `SigmoidTopK`: the SwitchHead / σ-MoE router.
//!
//! Inputs: x `[n, D]`, selection weights `[G*E, D]` (row `g*E + e` = group g, expert e; a group
//! is a head for attention, the single group for σ-MoE). Attributes: groups G, k.
//! `gate = sigmoid(float32(x @ sel^T))`, then the top k of each group's E gates. Gates are
//! raw sigmoid values, not renormalised. Output ids are flat (`g*E + e`), ordered by
//! descending gate (ties: lower id first; ties are measure-zero and nothing relies on them).

use crate::linear::matrix_dims;
use crate::{OpError, Tensor, dot, sigmoid};

/// Per-row routing decisions: `[n, groups, k]` flat expert ids and their gates.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    /// Number of groups (heads).
    pub groups: usize,
    /// Experts selected per group.
    pub k: usize,
    /// Flat expert ids, `[n, groups, k]` row-major.
    pub idx: Vec<usize>,
    /// Gate of each selected expert, same layout as `idx`.
    pub gate: Vec<f32>,
}

impl Routing {
    /// The `(id, gate)` pairs of row `r`, group `g`.
    pub fn selected(&self, r: usize, g: usize) -> impl Iterator<Item = (usize, f32)> + '_ {
        let start = (r * self.groups + g) * self.k;
        let end = start + self.k;
        self.idx[start..end]
            .iter()
            .copied()
            .zip(self.gate[start..end].iter().copied())
    }
}

/// Routes every row of `x` (`[n, D]`) with `sel` (`[groups*E, D]`), keeping k per group.
pub fn sigmoid_topk(x: &Tensor, sel: &Tensor, groups: usize, k: usize) -> Result<Routing, OpError> {
    let (rows, d) = matrix_dims("router weight", sel)?;
    let experts = check_router(x, rows, d, groups, k)?;
    let mut routing = Routing {
        groups,
        k,
        idx: Vec::new(),
        gate: Vec::new(),
    };
    for r in 0..x.rows() {
        let gates: Vec<f32> = (0..rows)
            .map(|e| sigmoid(dot(x.row(r), sel.row(e)) as f32 as f64) as f32)
            .collect();
        for g in 0..groups {
            let base = g * experts;
            for e in top_k(&gates[base..base + experts], k) {
                routing.idx.push(base + e);
                routing.gate.push(gates[base + e]);
            }
        }
    }
    Ok(routing)
}

/// Indices of the k largest values, descending (ties: lower index first).
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

fn check_router(
    x: &Tensor,
    rows: usize,
    d: usize,
    groups: usize,
    k: usize,
) -> Result<usize, OpError> {
    if x.last_dim() != d {
        return Err(OpError::Shape {
            what: "router input".into(),
            expected: format!("[.., {d}]"),
            got: format!("{:?}", x.shape()),
        });
    }
    if groups == 0 || !rows.is_multiple_of(groups) {
        return Err(attr(
            "groups",
            format!("{rows} router rows do not split into {groups} groups"),
        ));
    }
    let experts = rows / groups;
    if k == 0 || k > experts {
        return Err(attr("k", format!("k = {k} must be in 1..={experts}")));
    }
    Ok(experts)
}

fn attr(attr: &'static str, reason: String) -> OpError {
    OpError::Attribute {
        op: "SigmoidTopK",
        attr,
        reason,
    }
}
