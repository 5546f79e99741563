//! switchhead-kernels: fast CPU kernels for the SwitchHead ops.
//!
//! Each kernel computes exactly what its `switchhead_ops` reference computes (SPEC.md), over a
//! whole batch of row-major f32 slices, with f32 accumulation. Mixtures of experts route
//! first and then run only the selected experts: the (row, slot) pairs are grouped by expert
//! and each expert does one gathered matrix product. The pairing tests
//! (`tests/match_reference.rs`) check every kernel against the reference on random inputs.

mod error;
mod gemm;
mod parallel;
mod positions;
mod projections;
mod vexp;
mod weight;

pub mod attention;
pub mod cuda;
pub mod gpu;
pub mod kv_attention;
pub mod linear;
pub mod moe_attention;
pub mod norm;
pub mod quant;
pub mod routing;
pub mod sigma_moe;

pub use error::KernelError;
pub use kv_attention::{
    KvPast, KvSlab, KvStep, kv_with_capacity, moe_attention_kv, moe_attention_kv_in_place,
    moe_attention_kv_rows,
};
pub use linear::{DenseFfnWeights, dense_ffn, linear, linear_with};
pub use moe_attention::{MoeAttentionWeights, Projections, moe_attention};
pub use norm::{add_in_place, concat_seq, embedding, layer_norm, relu_in_place, softmax_rows};
pub use sigma_moe::{SigmaMoeWeights, sigma_moe};
pub use weight::{WeightLayout, WeightRef};

/// The kernel path each weight format takes on this CPU, e.g. `"f32: avx512f, int8:
/// avx512-vnni, int4: avx512-vnni, bf16: avx512-bf16"` (what `switchhead bench` reports).
pub fn kernel_paths() -> String {
    #[cfg(target_arch = "x86_64")]
    let f32_path = match gemm::avx512_available() {
        true => "avx512f",
        false => "matrixmultiply",
    };
    #[cfg(not(target_arch = "x86_64"))]
    let f32_path = "matrixmultiply";
    format!("f32: {f32_path}, {}", quant::paths())
}
