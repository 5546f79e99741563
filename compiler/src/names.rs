//! Canonical tensor names: the training-code key names of SPEC.md section 4.
//!
//! Every importer maps whatever layout it reads onto these names; everything downstream
//! (validation, the reference executor, lowering) speaks only these.

/// Token embedding `[V, D]`.
pub const EMBEDDING: &str = "embedding.weight";
/// Final LayerNorm weight `[D]`.
pub const OUT_NORM_W: &str = "out_norm.weight";
/// Final LayerNorm bias `[D]`.
pub const OUT_NORM_B: &str = "out_norm.bias";
/// Output projection `[V, D]`.
pub const OUTPUT_W: &str = "output.weight";
/// Output bias `[V]`.
pub const OUTPUT_B: &str = "output.bias";
/// Statistics buffer of the σ-MoE layer: not a weight, ignored on import.
pub const IGNORED_SUFFIX: &str = "pkm.kv_sel_counts_100";

/// Names of layer `i`'s tensors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerNames {
    prefix: String,
}

impl LayerNames {
    /// Names for layer `i`.
    pub fn new(i: usize) -> Self {
        LayerNames {
            prefix: format!("unique_layers.{i}."),
        }
    }
    fn n(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }
    /// LN1 weight / bias `[D]`.
    pub fn norm1(&self) -> (String, String) {
        (self.n("norm1.weight"), self.n("norm1.bias"))
    }
    /// LN2 weight / bias `[D]`.
    pub fn norm2(&self) -> (String, String) {
        (self.n("norm2.weight"), self.n("norm2.bias"))
    }
    /// Attention projection `q`, `k`, `v` or `o`.
    pub fn proj(&self, which: char) -> String {
        self.n(&format!("self_attn.projections.{which}"))
    }
    /// Router (selection) weights for `v` or `o`.
    pub fn sel(&self, which: char) -> String {
        self.n(&format!("self_attn.selections.{which}"))
    }
    /// XL position-key projection `[H*dh, D]`.
    pub fn pos_to_pk(&self) -> String {
        self.n("self_attn.pos_to_pk")
    }
    /// Dense FFN first linear (weight `[d_ff, D]`, bias `[d_ff]`).
    pub fn linear1(&self) -> (String, String) {
        (self.n("linear1.weight"), self.n("linear1.bias"))
    }
    /// Dense FFN second linear (weight `[D, d_ff]`, bias `[D]`).
    pub fn linear2(&self) -> (String, String) {
        (self.n("linear2.weight"), self.n("linear2.bias"))
    }
    /// σ-MoE router `[N_E, D]`.
    pub fn moe_sel(&self) -> String {
        self.n("pkm.expert_sel")
    }
    /// σ-MoE keys `[N_E, D, G]`.
    pub fn moe_keys(&self) -> String {
        self.n("pkm.keys")
    }
    /// σ-MoE values `[N_E, G, D]`.
    pub fn moe_values(&self) -> String {
        self.n("pkm.values")
    }
}
