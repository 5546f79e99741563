//! Quantized (int8, int4) and bf16 weights in the kernels' own packed layout, and their
//! products `c = a @ W^T` with f32 activations and f32 outputs.
//!
//! A [`PackedWeight`] holds `count` matrices, each a logical `[out, inp]` W, built once at
//! load from the plan's bytes (`from_int8`, `from_int4`, `from_bf16`). Each matrix is cut
//! into panels of [`switchhead_ops::plan::PANEL`] (32) output columns; a panel is a run of
//! 128-byte steps, each holding 4 bytes for each of its 32 columns: 4 K values of int8, 8 of
//! int4 (two nibbles a byte) or 2 of bf16. So one step is two 512-bit vectors, exactly the
//! operands of `vpdpbusd` / `vdpbf16ps` for 16 columns each, and every weight byte is read
//! once per row tile. K is cut into blocks (int4: its quantization group; int8: 128 values;
//! bf16: one block), each padded to whole steps with zero weights; every block of every
//! panel has 32 f32 scales (an int8 column's scale repeated per block).
//!
//! The integer values are stored offset to unsigned (`q + 128`, `q + 8`), so that the
//! AVX-512 VNNI path can feed them to `vpdpbusd` as its unsigned operand against the
//! activations quantized to signed bytes per row and block; the offset times the sum of the
//! quantized activations of a block (exact, in i32) starts each block's accumulator.
//!
//! [`packed_gemm`] takes the fastest path this CPU runs ([`paths`] names them; AMX is not
//! used): int8/int4 through VNNI (activations quantized to 8 bits, so results carry that
//! rounding, about 1e-3 of the output's magnitude) or AVX-512F (weights widened to f32 in
//! registers, f32 activations); bf16 through AVX-512 BF16 (activations rounded to bf16);
//! everything through a portable path that widens a panel to f32 and runs plain loops.
//! `SWITCHHEAD_QUANT_PATH=portable` (or `SWITCHHEAD_NO_AVX512`) forces the portable path.

mod dispatch;
mod layout;
mod portable;
#[cfg(target_arch = "x86_64")]
mod simd;
#[cfg(target_arch = "x86_64")]
mod simd_bf16;
#[cfg(target_arch = "x86_64")]
mod simd_f32;
#[cfg(target_arch = "x86_64")]
mod simd_vnni;
#[cfg(test)]
mod tests;

#[allow(unused_imports)] // until the kernels' `Stored` weights call it
pub(crate) use dispatch::packed_gemm;
#[doc(hidden)]
pub use dispatch::{bench_f32_panels, bench_packed, bench_paths};
pub use dispatch::{bf16_native, paths};
pub use layout::{PackedKind, PackedWeight};
