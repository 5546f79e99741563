//! The `.shplan` file: a compiled SwitchHead model in our own format, for the native executor.
//!
//! A plan holds the optimized IR graph (ops, attributes, value ids, weight references) and
//! the weights, laid out so that a reader can memory-map the file and use every f32 weight
//! in place. The compiler writes it ([`write_plan`]); the runtime reads and verifies it
//! ([`read_plan`]). Both live here so that the runtime never depends on the compiler.
//!
//! # Layout (format version 3; version 2 is the same without quantized weights, version 1
//! also without weight layouts)
//!
//! All integers are little-endian. Offsets are bytes from the start of the file.
//!
//! ```text
//! offset  size  field
//! 0       8     magic            89 53 48 50 4C 41 4E 0A  ("\x89SHPLAN\n")
//! 8       4     version          u32, 3 if a weight is i8/i4, else 2
//! 12      4     header_len       u32, 64 (bytes of this header)
//! 16      8     graph_offset     u64, = header_len
//! 24      8     graph_len        u64, bytes of the graph (UTF-8 JSON, below)
//! 32      8     weights_offset   u64, a multiple of 64, >= graph_offset + graph_len
//! 40      8     weights_len      u64, a multiple of 64
//! 48      8     file_len         u64, = weights_offset + weights_len + 8
//! 56      4     flags            u32, 0 (no flags are defined; a reader rejects others)
//! 60      4     reserved         u32, 0
//! 64      ...   graph            graph_len bytes of JSON
//! ...     ...   zero padding up to weights_offset
//! w_off   ...   weights          each weight at weights_offset + its `offset` (a multiple of
//!                                64), followed by zero padding to the next multiple of 64
//! end-8   8     checksum         u64: CRC-32 (IEEE 802.3, as zlib computes it) of bytes
//!                                0 .. file_len - 8, zero-extended to 64 bits
//! ```
//!
//! A reader checks, in this order, and reports the first failure ([`PlanError`]): the magic
//! (else "not a plan"), the version (0 is invalid; above [`FORMAT_VERSION`] is "written by a
//! newer switchhead"), that the file is at least 64 bytes and exactly `file_len` bytes long
//! (else truncated / trailing data), the offsets and alignments above, the checksum, and
//! finally the graph (JSON schema plus the structural rules below).
//!
//! The weights section starts 64-byte aligned in the file, and a memory map starts on a
//! page, so every weight is 64-byte aligned in memory: an f32 weight can be used in place.
//!
//! # The graph (JSON object)
//!
//! ```json
//! {
//!   "producer": "switchhead 0.1.0",
//!   "n_values": 60,
//!   "inputs":  [{"name": "tokens", "value": 0, "dtype": "i64"},
//!               {"name": "memory.0", "value": 1, "dtype": "f32"}],
//!   "outputs": [{"name": "logits", "value": 57}, {"name": "memory_out.0", "value": 9}],
//!   "weights": [{"name": "embedding.weight", "value": 2, "dtype": "f32",
//!                "shape": [8000, 412], "offset": 0, "nbytes": 13184000},
//!               {"name": "output.weight", "value": 3, "dtype": "f32", "layout": "panels",
//!                "shape": [8000, 412], "offset": 13184000, "nbytes": 13184000}],
//!   "nodes":   [{"name": "embedding", "op": {"type": "Embedding"},
//!                "inputs": [0, 2], "outputs": [3]}],
//!   "meta":    {"d_model": 412, "vocab_size": 8000, "n_layers": 16, "chunk_size": 256}
//! }
//! ```
//!
//! - Values are numbered `0 .. n_values`. Each is defined exactly once: as a graph input, a
//!   weight, or a node output. Nodes are in execution order; a node reads only values
//!   defined before it.
//! - Interface (as the ONNX emission's): input `tokens` i64 `[batch, seq]`; output `logits`
//!   f32 `[batch, seq, vocab]`. Transformer-XL models also take `memory.{i}` f32
//!   `[batch, mem_len, D]` (mem_len may be 0) and return `memory_out.{i}` f32
//!   `[batch, seq, D]`, one per layer.
//! - A weight's `dtype` is `f32`, `f16` or `bf16` (IEEE half, bfloat16; little-endian), or
//!   (version 3) `i8` / `i4`, quantized (below); its bytes are
//!   `weights[offset .. offset + nbytes]`, `nbytes = stored elements * size(dtype)` for the
//!   unquantized dtypes. Compute is f32 unless a reader has kernels for the stored type:
//!   readers widen f16/bf16 weights at load.
//! - A quantized weight (`"dtype": "i8"` or `"i4"`, version 3) has the required field
//!   `"group": G` (>= 1; other dtypes must not have it) and is always `row_major`. It is
//!   `count` matrices of `out` rows by `inp` reduction elements: a rank-2 `[out, in]` weight
//!   is one; a rank-3 `[E, in, out]` expert stack (applied as `x @ W_e`) is E, each stored
//!   as W_e's `[out, in]` transpose. Each row is cut into groups of G consecutive elements
//!   (the last possibly shorter), `ceil(inp / G)` per row, one f32 scale each; element =
//!   q * scale (symmetric, no zero point). Its bytes, in order: the values of all matrices,
//!   row after row (`i8`: one two's-complement byte per element; `i4`: `ceil(inp / 2)`
//!   bytes per row, element 2j in the low nibble of byte j and 2j+1 in the high nibble,
//!   two's complement -8..7, an odd row's last high nibble 0); zero padding to a multiple
//!   of 4 bytes; the little-endian f32 scales, `count * out * ceil(inp / G)` of them,
//!   row-major `[count, out, groups]`. `nbytes` is all of that ([`QuantShape::nbytes`]).
//!   The compiler writes `i8` with G = `inp` (a scale per output channel) and `i4` with
//!   G = 32, 64 or 128; [`quantize`] and [`dequantize`] are the reference.
//! - A weight's optional `layout` (version 2) orders its elements: `row_major` (the default,
//!   omitted; stored elements = product(shape)) or `panels`, for a rank-2 `[out, in]` weight
//!   read only as the weight of `Linear`, `w1`/`w2` of `DenseFfn`, `q`, `k`, the routers
//!   or the merged `qkr`, and (XL) `pos_to_pk` of `MoEAttention` (all alike), or the router
//!   of `SigmaMoE`
//!   (`packed_layout` names the slots): output rows in panels
//!   of [`PANEL`] (the last zero padded), each panel input-major, so element `(o, i)` is at
//!   `(o / 32) * in * 32 + i * 32 + o % 32` and stored elements = `ceil(out / 32) * 32 * in`;
//!   or `expert_panels` (also version 2), for a rank-3 `[E, in, out]` expert stack read only
//!   as `v`/`o` of an `experts_vo` `MoEAttention` or `keys`/`values` of `SigmaMoE`: each
//!   expert in turn, as the `panels` layout of its `[out, in]` transpose (stored elements =
//!   `E * ceil(out / 32) * 32 * in`). The compiler picks these so the CPU kernels stream the
//!   weight in place (`layout` module).
//! - `op` is one of (`type` and attributes; inputs in order, shapes as `crate::op::Op`):
//!   - `{"type": "Embedding"}`: tokens, table `[V, D]`.
//!   - `{"type": "LayerNorm", "eps": 1e-5}`: x, weight `[D]`, bias `[D]`.
//!   - `{"type": "Linear", "bias": true}`: x, weight `[out, in]`, bias `[out]` if `bias`.
//!   - `{"type": "Add"}`, `{"type": "Relu"}`, `{"type": "Softmax", "axis": -1}`.
//!   - `{"type": "ConcatSeq"}`: a `[B, M, D]`, b `[B, T, D]` -> `[B, M+T, D]`.
//!   - `{"type": "DenseFfn"}`: x, w1 `[d_ff, D]`, b1, w2 `[D, d_ff]`, b2.
//!   - `{"type": "MoEAttention", "heads": H, "experts": E, "k": k, "d_head": dh,
//!     "pos": {"kind": "rope", "rotate_fraction": 0.5, "base": 10000.0} | {"kind": "xl"},
//!     "causal": true, "variant": "experts_vo" | "gated" | "dense"}`: xq, xkv, q, k, v, o,
//!     then `sel_v`, `sel_o` (experts_vo), `sel_o` (gated), then `pos_to_pk` (xl). With
//!     `"merged"` (optional, version 2; written by the `merge-projections` pass): `"all"`:
//!     xq, xkv (the same value), `qkr [2*H*dh + R, D]` (the rows of q, k, then the routers
//!     the variant has), v, o, then `pos_to_pk` (xl); `"sides"`: xq, xkv, `qo` (rows of q
//!     then `sel_o`), `kv` (rows of k then `sel_v`), v, o, then `pos_to_pk` (xl).
//!   - `{"type": "SigmaMoE", "experts": N_E, "expert_size": G, "k": K}`: x, router, keys,
//!     values.
//! - `meta` holds shape facts for loaders: `d_model`, `vocab_size`, `n_layers`, and
//!   `chunk_size` (the training context, or null).
//!
//! Unknown JSON fields are rejected, so a reader never silently ignores something a newer
//! writer meant; a change to the layout or the schema bumps [`FORMAT_VERSION`], except an
//! optional field whose absence keeps the old meaning (`layout`, `merged`): older plans still
//! load, and an older reader names the field it does not know. A writer writes the oldest
//! version that holds its plan (3 only with quantized weights), and a reader refuses a file
//! whose weights need a newer version than its header says.

mod error;
mod graph;
mod header;
mod layout;
mod quant;
mod read;
mod write;

pub use error::PlanError;
pub use graph::{
    PlanDType, PlanGraph, PlanInput, PlanMeta, PlanNode, PlanOp, PlanOutput, PlanPos, PlanVariant,
    PlanWeight,
};
pub use header::{ALIGN, FORMAT_VERSION, HEADER_LEN, Header, MAGIC, TRAILER_LEN};
pub use layout::{
    PANEL, PlanLayout, from_expert_panels, from_panels, packed_layout, to_expert_panels, to_panels,
};
pub use quant::{QuantBits, QuantShape, dequantize, quant_parts, quantize};
pub use read::{PlanFile, read_plan};
pub use write::{layout_weights, write_plan};
