//! Names of our domain, ops and attributes: kept here once, as the compiler's emitter writes them.

/// The custom operator-set domain.
pub const DOMAIN: &str = "ai.switchhead";
/// The version of [`DOMAIN`] this runtime implements.
pub const DOMAIN_VERSION: i64 = 1;
/// One attention layer.
pub const MOE_ATTENTION: &str = "MoEAttention";
/// One σ-MoE feed-forward block.
pub const SIGMA_MOE: &str = "SigmaMoE";

/// Attribute names of `MoEAttention`.
pub mod attn {
    pub const HEADS: &str = "heads";
    pub const EXPERTS: &str = "experts";
    pub const K: &str = "k";
    pub const D_HEAD: &str = "d_head";
    pub const POS: &str = "pos";
    pub const ROTATE_FRACTION: &str = "rotate_fraction";
    pub const ROPE_BASE: &str = "rope_base";
    pub const CAUSAL: &str = "causal";
    pub const VARIANT: &str = "variant";
    pub const KV_CACHE: &str = "kv_cache";
    /// 1: q, k and the routers are one `qkr` input; 2: two inputs by side, `qo` and `kv`
    /// (the `merge-projections` pass).
    pub const MERGED: &str = "merged_projections";
}

/// Attribute names of `SigmaMoE`.
pub mod sigma {
    pub const EXPERTS: &str = "experts";
    pub const EXPERT_SIZE: &str = "expert_size";
    pub const K: &str = "k";
}
