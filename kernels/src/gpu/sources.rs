//! The kernel sources: one `.cu` file per concern in `kernels/cuda/`, each compiled on its own
//! with a dialect prelude and the shared helpers prepended (no `#include`, no headers): the
//! same text builds through NVRTC for CUDA and as OpenCL C 1.2 for any OpenCL device.

/// Which compiler a source is prepared for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// NVRTC (CUDA C++).
    Cuda,
    /// OpenCL C 1.2.
    OpenCl,
}

/// The CUDA dialect prelude.
pub const PRELUDE_CUDA: &str = include_str!("../../cuda/prelude_cuda.h");
/// The OpenCL dialect prelude.
pub const PRELUDE_OPENCL: &str = include_str!("../../cuda/prelude_opencl.h");
/// Helpers every source shares, written in the portable vocabulary.
pub const COMMON: &str = include_str!("../../cuda/common.cuh");

impl Dialect {
    /// The prelude of this dialect.
    pub fn prelude(self) -> &'static str {
        match self {
            Dialect::Cuda => PRELUDE_CUDA,
            Dialect::OpenCl => PRELUDE_OPENCL,
        }
    }
}

/// One compilation unit and the kernels it defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelSource {
    /// Module name (the file stem), also the cache file prefix.
    pub name: &'static str,
    /// The `.cu` text without the prelude.
    pub body: &'static str,
    /// Kernel entry points the launchers call.
    pub entry_points: &'static [&'static str],
}

impl KernelSource {
    /// The text a compiler of `dialect` builds: prelude, shared helpers, then the body.
    pub fn source_for(&self, dialect: Dialect) -> String {
        format!(
            "{}\n{COMMON}\n// ---- {}.cu ----\n{}",
            dialect.prelude(),
            self.name,
            self.body
        )
    }

    /// The CUDA text (what NVRTC compiles).
    pub fn full_source(&self) -> String {
        self.source_for(Dialect::Cuda)
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
    kernel_source!("embedding", ["embedding"]),
    kernel_source!("layer_norm", ["layer_norm", "softmax_rows"]),
    kernel_source!(
        "elementwise",
        [
            "bias_act",
            "add_inplace",
            "gate_heads",
            "copy_cols",
            "concat_seq",
            "cast_rows_bf16"
        ]
    ),
    kernel_source!("positions", ["rope_inplace", "xl_sinusoid"]),
    kernel_source!("routing", ["route_topk", "expert_offsets", "scatter_slots"]),
    kernel_source!("gemm", ["gemm_nt"]),
    kernel_source!("expert_gemm", ["expert_gemm"]),
    kernel_source!("attention", ["flash_attention", "kv_append"]),
];

/// The source named `name`.
pub fn source(name: &str) -> Option<&'static KernelSource> {
    SOURCES.iter().find(|s| s.name == name)
}

/// The source that defines entry point `kernel`.
pub fn source_of(kernel: &str) -> Option<&'static KernelSource> {
    SOURCES.iter().find(|s| s.entry_points.contains(&kernel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_point_is_defined_once_as_a_kernel() {
        for s in SOURCES {
            for e in s.entry_points {
                let def = format!("KERNEL void {e}(");
                assert_eq!(s.body.matches(&def).count(), 1, "{}.cu defines {e}", s.name);
                assert_eq!(source_of(e), Some(s));
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
    fn both_dialects_share_the_body() {
        let s = source("routing").unwrap();
        let (cuda, cl) = (s.source_for(Dialect::Cuda), s.source_for(Dialect::OpenCl));
        assert!(cuda.starts_with(PRELUDE_CUDA) && cl.starts_with(PRELUDE_OPENCL));
        assert!(cuda.ends_with(s.body) && cl.ends_with(s.body));
        assert!(!s.body.contains("__global__") && !s.body.contains("__kernel"));
    }
}
