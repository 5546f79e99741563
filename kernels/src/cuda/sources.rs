//! The kernel sources: one `.cu` file per concern, each compiled on its own with the shared
//! prelude `common.cuh` prepended (no `#include`, no CUDA headers needed by NVRTC).

/// The shared prelude (bf16 conversion, warp/block reductions, instantiation macro).
pub const COMMON: &str = include_str!("../../cuda/common.cuh");

/// One compilation unit and the `extern "C"` kernels it defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelSource {
    /// Module name (the file stem), also the cache file prefix.
    pub name: &'static str,
    /// The `.cu` text without the prelude.
    pub body: &'static str,
    /// Kernel entry points the launchers load from the module.
    pub entry_points: &'static [&'static str],
}

impl KernelSource {
    /// The text NVRTC compiles: prelude, then the body.
    pub fn full_source(&self) -> String {
        format!("{COMMON}\n// ---- {}.cu ----\n{}", self.name, self.body)
    }
}

macro_rules! kernel_source {
    ($name:literal, [$($entry:literal),* $(,)?]) => {
        KernelSource {
            name: $name,
            body: include_str!(concat!("../../cuda/", $name, ".cu")),
            entry_points: &[$($entry),*],
        }
    };
}

/// Every kernel source, in a fixed order.
pub const SOURCES: &[KernelSource] = &[
    kernel_source!("embedding", ["embedding_f32", "embedding_bf16"]),
    kernel_source!("layer_norm", ["layer_norm_f32", "layer_norm_bf16"]),
    kernel_source!(
        "elementwise",
        [
            "bias_act_f32",
            "bias_act_bf16",
            "add_inplace",
            "gate_heads",
            "cast_f32_bf16"
        ]
    ),
    kernel_source!("positions", ["rope_inplace", "xl_sinusoid"]),
    kernel_source!("routing", ["route_topk", "expert_offsets", "scatter_slots"]),
    kernel_source!("expert_gemm", ["expert_gemm_f32", "expert_gemm_bf16"]),
    kernel_source!("attention", ["flash_attention"]),
    kernel_source!("decode", ["kv_append", "decode_attention"]),
];

/// The source named `name`.
pub fn source(name: &str) -> Option<&'static KernelSource> {
    SOURCES.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_point_is_defined_extern_c_in_its_source() {
        for s in SOURCES {
            for e in s.entry_points {
                let direct = format!("__global__ void {e}(");
                let stem = e.rsplit_once('_').map_or(*e, |(stem, _)| stem);
                let via_macro = format!("__global__ void {stem}_##S(");
                let found = s.body.contains(&direct) || s.body.contains(&via_macro);
                assert!(found, "{}.cu does not define {e}", s.name);
            }
        }
    }

    #[test]
    fn names_are_unique_and_findable() {
        for s in SOURCES {
            assert_eq!(source(s.name), Some(s));
        }
        assert!(source("nope").is_none());
    }

    #[test]
    fn full_source_starts_with_the_prelude() {
        let s = source("routing").unwrap().full_source();
        assert!(s.starts_with(COMMON));
        assert!(s.contains("route_topk"));
    }
}
