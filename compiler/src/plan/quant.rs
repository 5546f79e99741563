//! Weight-only quantization of a plan (`i8` / `i4`, `switchhead_ops::plan` module doc): which
//! weights are quantized and their stored bytes.
//!
//! Quantized: every weight all of whose readers are projection or expert slots
//! ([`quantizable`]): the weight of `Linear` (the output head included), `w1`/`w2` of
//! `DenseFfn`, `q`, `k`, `v`, `o`, the routers, the merged `qkr`/`qo`/`kv` and (XL)
//! `pos_to_pk` of `MoEAttention`, the router, keys and values of `SigmaMoE`. Embeddings,
//! LayerNorm weights and biases stay f32. A rank-3 `[E, in, out]` stack is stored as each
//! expert's `[out, in]` transpose.

use std::collections::HashMap;

use switchhead_ops::op::Op;
use switchhead_ops::plan::{PlanLayout, PlanWeight, QuantBits, QuantShape, quantize};

use crate::ir::{Graph, ValueId};

/// How to quantize a plan's projection and expert weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanQuant {
    /// int8 (one scale per output channel) or int4 (one per `group` reduction elements).
    pub bits: QuantBits,
    /// int4 group length (>= 1; the CLI offers 32, 64 or 128); ignored for int8.
    pub group: usize,
}

impl PlanQuant {
    /// The group of a weight whose rows have `inp` reduction elements.
    fn group_for(&self, inp: usize) -> usize {
        match self.bits {
            QuantBits::Int8 => inp.max(1),
            QuantBits::Int4 => self.group,
        }
    }
}

/// Whether input `slot` of `op` is a projection or expert weight that may be quantized.
pub fn quantizable(op: &Op, slot: usize) -> bool {
    match op {
        Op::Linear { .. } => slot == 1,
        Op::DenseFfn => slot == 1 || slot == 3,
        Op::MoEAttention(a) => {
            let s = a.slots();
            let fixed = [s.q, s.k, s.v, s.o].contains(&slot);
            fixed || [s.sel_v, s.sel_o, s.pos_to_pk].contains(&Some(slot))
        }
        Op::SigmaMoe(_) => (1..=3).contains(&slot),
        _ => false,
    }
}

/// Marks as quantized (row-major, `group`, `nbytes`) every rank-2/3 weight that all the live
/// nodes reading it read in a [`quantizable`] slot.
pub(super) fn choose_quantized(
    graph: &Graph,
    ids: &HashMap<ValueId, u32>,
    weights: &mut [PlanWeight],
    q: PlanQuant,
) {
    let mut uses: HashMap<u32, bool> = HashMap::new();
    for (_, node) in graph.live_nodes() {
        for (slot, v) in node.inputs.iter().enumerate() {
            let Some(&id) = ids.get(v) else { continue };
            let ok = quantizable(&node.op, slot);
            *uses.entry(id).or_insert(ok) &= ok;
        }
    }
    for w in weights.iter_mut() {
        if uses.get(&w.value) != Some(&true) {
            continue;
        }
        let Some(inp) = QuantShape::of(&w.shape, 1).map(|s| s.inp) else {
            continue;
        };
        let group = q.group_for(inp);
        let Some(s) = QuantShape::of(&w.shape, group) else {
            continue;
        };
        w.dtype = q.bits.dtype();
        w.group = Some(group as u64);
        w.layout = PlanLayout::RowMajor;
        w.nbytes = s.nbytes(q.bits) as u64;
    }
}

/// The stored bytes of quantized weight `w` from its row-major f32 elements `data` (None: `w`
/// is not quantized).
pub(super) fn quantized_bytes(w: &PlanWeight, data: &[f32]) -> Option<Vec<u8>> {
    let (bits, s) = w.quant()?;
    Some(match w.shape.len() {
        3 => quantize(bits, &transpose_experts(data, s), s),
        _ => quantize(bits, data, s),
    })
}

/// `[E, in, out]` row-major -> each expert's `[out, in]` transpose, row-major.
fn transpose_experts(data: &[f32], s: QuantShape) -> Vec<f32> {
    let per = s.out * s.inp;
    let mut t = vec![0f32; s.count * per];
    for (src, dst) in data
        .chunks_exact(per.max(1))
        .zip(t.chunks_exact_mut(per.max(1)))
    {
        for (i, row) in src.chunks_exact(s.out.max(1)).enumerate() {
            for (o, &v) in row.iter().enumerate() {
                dst[o * s.inp + i] = v;
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expert_transpose_puts_e_i_o_at_e_o_i() {
        let s = QuantShape {
            count: 2,
            out: 3,
            inp: 2,
            group: 2,
        };
        let data: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let t = transpose_experts(&data, s);
        for (e, i, o) in [(0, 1, 2), (1, 0, 1), (1, 1, 0)] {
            assert_eq!(t[e * 6 + o * 2 + i], data[e * 6 + i * 3 + o]);
        }
    }
}
