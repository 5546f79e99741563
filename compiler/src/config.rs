//! `config.json`: the hyper-parameters that cannot be read off tensor shapes.
//!
//! The schema is documented in README.md ("config.json"). Unknown keys are rejected so a typo
//! never silently falls back to a default.

use serde::{Deserialize, Serialize};

/// Positional encoding of the attention layers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PosEncodingKind {
    /// Rotary embeddings on a fraction of each head's channels.
    Rope,
    /// Transformer-XL relative positions with one chunk of memory.
    Xl,
}

/// Feed-forward block kind.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FfnKind {
    /// `linear2(relu(linear1(x)))`.
    Dense,
    /// σ-MoE (SwitchAll).
    SigmaMoe,
}

/// Attention kind.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AttentionKind {
    /// SwitchHead mixture-of-experts attention.
    #[default]
    Switchhead,
    /// Plain dense multi-head attention (the baseline).
    Dense,
}

/// A model's configuration, as read from `config.json` (see README.md for each key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub vocab_size: usize,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    /// Experts per head (E). 1 selects the gated dense variant. Ignored for dense attention.
    #[serde(default = "one")]
    pub n_experts: usize,
    /// Active experts per head (k).
    #[serde(default = "one")]
    pub moe_k: usize,
    pub d_head: usize,
    /// Hidden size of the dense FFN (required when `ffn` is "dense").
    #[serde(default)]
    pub d_ff: Option<usize>,
    pub pos_encoding: PosEncodingKind,
    #[serde(default = "default_rotate_fraction")]
    pub rotate_fraction: f64,
    #[serde(default = "default_rope_base")]
    pub rope_base: f64,
    #[serde(default = "default_ffn")]
    pub ffn: FfnKind,
    #[serde(default)]
    pub ffn_n_experts: Option<usize>,
    #[serde(default)]
    pub ffn_expert_size: Option<usize>,
    #[serde(default)]
    pub ffn_k: Option<usize>,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Training context / XL chunk length.
    #[serde(default)]
    pub chunk_size: Option<usize>,
    #[serde(default)]
    pub attention: AttentionKind,
}

fn one() -> usize {
    1
}
fn default_rotate_fraction() -> f64 {
    0.5
}
fn default_rope_base() -> f64 {
    10000.0
}
fn default_ffn() -> FfnKind {
    FfnKind::Dense
}
fn default_eps() -> f64 {
    1e-5
}
