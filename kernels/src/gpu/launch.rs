//! One typed launcher per kernel: sizes checked (they must fit the kernels' `int`s; no rows
//! is nothing to do), the geometry of [`super::geometry`], the argument list in the order of the kernel's parameters
//! (the `.cu` file documents each kernel). Generic over the [`Device`], so the CUDA and
//! OpenCL executors share every line of it.

use super::geometry as geo;
use super::{Arg, Device, Gemm, GpuError, WType};

fn int(kernel: &str, what: &str, v: usize) -> Result<i32, GpuError> {
    i32::try_from(v).map_err(|_| GpuError::shape(kernel, format!("{what} = {v} exceeds an int")))
}

fn long(v: usize) -> i64 {
    v as i64
}

/// A weight operand: its buffer and element type.
#[derive(Debug)]
pub struct W<'a, B> {
    pub buf: &'a B,
    pub wtype: WType,
}

impl<B> Clone for W<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B> Copy for W<'_, B> {}

/// `out[r] = table[tokens[r]]` for `rows` i64 tokens; `table` `[vocab, d]`.
pub fn embedding<D: Device>(
    dev: &D,
    tokens: &D::Buffer,
    table: W<'_, D::Buffer>,
    out: &D::Buffer,
    (rows, d, vocab): (usize, usize, usize),
) -> Result<(), GpuError> {
    let k = "embedding";
    if rows == 0 {
        return Ok(());
    }
    let l = geo::per_row(k, rows as u64)?;
    let args = [
        Arg::Buf(tokens),
        Arg::Buf(table.buf),
        Arg::I32(table.wtype.code()),
        Arg::Buf(out),
        Arg::I32(int(k, "rows", rows)?),
        Arg::I32(int(k, "d", d)?),
        Arg::I32(int(k, "vocab", vocab)?),
    ];
    dev.launch(k, l, &args)
}

/// LayerNorm of `rows` rows of width `d`; gamma and beta of one type.
pub fn layer_norm<D: Device>(
    dev: &D,
    x: &D::Buffer,
    (gamma, beta): (W<'_, D::Buffer>, W<'_, D::Buffer>),
    y: &D::Buffer,
    (rows, d): (usize, usize),
    eps: f32,
) -> Result<(), GpuError> {
    let k = "layer_norm";
    if gamma.wtype != beta.wtype {
        return Err(GpuError::shape(k, "gamma and beta differ in type"));
    }
    if rows == 0 {
        return Ok(());
    }
    let l = geo::per_row(k, rows as u64)?;
    let args = [
        Arg::Buf(x),
        Arg::Buf(gamma.buf),
        Arg::Buf(beta.buf),
        Arg::I32(gamma.wtype.code()),
        Arg::Buf(y),
        Arg::I32(int(k, "rows", rows)?),
        Arg::I32(int(k, "d", d)?),
        Arg::F32(eps),
    ];
    dev.launch(k, l, &args)
}

/// Softmax in place over rows of `cols`.
pub fn softmax_rows<D: Device>(
    dev: &D,
    x: &D::Buffer,
    rows: usize,
    cols: usize,
) -> Result<(), GpuError> {
    let k = "softmax_rows";
    if rows == 0 {
        return Ok(());
    }
    let l = geo::per_row(k, rows as u64)?;
    let args = [
        Arg::Buf(x),
        Arg::I32(int(k, "rows", rows)?),
        Arg::I32(int(k, "cols", cols)?),
    ];
    dev.launch(k, l, &args)
}

/// `y = act(y + bias)` over `rows` rows of `cols`; no bias: `bias` None; act relu or none.
pub fn bias_act<D: Device>(
    dev: &D,
    y: &D::Buffer,
    bias: Option<W<'_, D::Buffer>>,
    (rows, cols): (usize, usize),
    relu: bool,
) -> Result<(), GpuError> {
    let k = "bias_act";
    let l = geo::elementwise((rows * cols) as u64);
    let (b, wtype) = bias.map_or((y, WType::F32), |b| (b.buf, b.wtype));
    let args = [
        Arg::Buf(y),
        Arg::Buf(b),
        Arg::I32(wtype.code()),
        Arg::I32(i32::from(bias.is_some())),
        Arg::I64(long(rows)),
        Arg::I32(int(k, "cols", cols)?),
        Arg::I32(i32::from(relu)),
    ];
    dev.launch(k, l, &args)
}

/// `y += x` over `n` elements.
pub fn add_inplace<D: Device>(
    dev: &D,
    y: &D::Buffer,
    x: &D::Buffer,
    n: usize,
) -> Result<(), GpuError> {
    let args = [Arg::Buf(y), Arg::Buf(x), Arg::I64(long(n))];
    dev.launch("add_inplace", geo::elementwise(n as u64), &args)
}

/// E = 1: `r[row, h, :] *= sigmoid(logits[row, h])`, logits `[rows, heads]`.
pub fn gate_heads<D: Device>(
    dev: &D,
    r: &D::Buffer,
    logits: &D::Buffer,
    (rows, heads, dh): (usize, usize, usize),
) -> Result<(), GpuError> {
    let k = "gate_heads";
    let args = [
        Arg::Buf(r),
        Arg::Buf(logits),
        Arg::I64(long(rows)),
        Arg::I32(int(k, "heads", heads)?),
        Arg::I32(int(k, "dh", dh)?),
    ];
    dev.launch(k, geo::elementwise((rows * heads * dh) as u64), &args)
}

/// A column block of a row-major matrix: `(buffer, row stride, first column)`.
#[derive(Debug)]
pub struct Cols<'a, B> {
    pub buf: &'a B,
    pub ld: usize,
    pub col: usize,
}

/// `dst[r, c] = scale * src[r, c]` for `rows` rows of `cols` columns of two blocks.
pub fn copy_cols<D: Device>(
    dev: &D,
    src: Cols<'_, D::Buffer>,
    dst: Cols<'_, D::Buffer>,
    (rows, cols): (usize, usize),
    scale: f32,
) -> Result<(), GpuError> {
    let k = "copy_cols";
    let args = [
        Arg::Buf(src.buf),
        Arg::I32(int(k, "ld", src.ld)?),
        Arg::I32(int(k, "col", src.col)?),
        Arg::Buf(dst.buf),
        Arg::I32(int(k, "ld", dst.ld)?),
        Arg::I32(int(k, "col", dst.col)?),
        Arg::I64(long(rows)),
        Arg::I32(int(k, "cols", cols)?),
        Arg::F32(scale),
    ];
    dev.launch(k, geo::elementwise((rows * cols) as u64), &args)
}

/// `y [batch, m+t, d] = cat(a [batch, m, d], b [batch, t, d])` on the sequence axis.
pub fn concat_seq<D: Device>(
    dev: &D,
    (a, b): (&D::Buffer, &D::Buffer),
    y: &D::Buffer,
    (batch, m, t, d): (usize, usize, usize, usize),
) -> Result<(), GpuError> {
    let k = "concat_seq";
    let args = [
        Arg::Buf(a),
        Arg::Buf(b),
        Arg::Buf(y),
        Arg::I32(int(k, "batch", batch)?),
        Arg::I32(int(k, "m", m)?),
        Arg::I32(int(k, "t", t)?),
        Arg::I32(int(k, "d", d)?),
    ];
    dev.launch(k, geo::elementwise((batch * (m + t) * d) as u64), &args)
}

/// `y [rows, cols]` bf16 from the f32 rows of x (`ldx` apart from element `x_off`).
pub fn cast_rows_bf16<D: Device>(
    dev: &D,
    (x, x_off, ldx): (&D::Buffer, usize, usize),
    y: &D::Buffer,
    (rows, cols): (usize, usize),
) -> Result<(), GpuError> {
    let k = "cast_rows_bf16";
    let args = [
        Arg::Buf(x),
        Arg::I64(long(x_off)),
        Arg::I32(int(k, "ldx", ldx)?),
        Arg::Buf(y),
        Arg::I32(int(k, "rows", rows)?),
        Arg::I32(int(k, "cols", cols)?),
    ];
    dev.launch(k, geo::elementwise((rows * cols) as u64), &args)
}

/// Rotary positions of a RoPE model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rope {
    pub n_rot: usize,
    pub base: f64,
}

/// RoPE in place on `[rows, heads*dh]`; row r at position `pos_offset + r % period`.
pub fn rope<D: Device>(
    dev: &D,
    x: &D::Buffer,
    (rows, heads, dh): (usize, usize, usize),
    rope: Rope,
    (period, pos_offset): (usize, usize),
) -> Result<(), GpuError> {
    let k = "rope_inplace";
    if !rope.n_rot.is_multiple_of(2) || rope.n_rot > dh || period == 0 {
        let reason = format!("n_rot {} must be even and at most {dh}", rope.n_rot);
        return Err(GpuError::shape(k, reason));
    }
    if rope.n_rot == 0 {
        return Ok(());
    }
    let args = [
        Arg::Buf(x),
        Arg::I64(long(rows)),
        Arg::I32(int(k, "heads", heads)?),
        Arg::I32(int(k, "dh", dh)?),
        Arg::I32(int(k, "n_rot", rope.n_rot)?),
        Arg::F64(rope.base),
        Arg::I64(long(period)),
        Arg::I64(long(pos_offset)),
    ];
    dev.launch(
        k,
        geo::elementwise((rows * heads * rope.n_rot / 2) as u64),
        &args,
    )
}

/// The scaled XL sinusoid `[count, d]` for positions `lo..lo+count`.
pub fn xl_sinusoid<D: Device>(
    dev: &D,
    pe: &D::Buffer,
    (count, d): (usize, usize),
    lo: i64,
    scale: f64,
) -> Result<(), GpuError> {
    let k = "xl_sinusoid";
    if !d.is_multiple_of(2) {
        return Err(GpuError::shape(k, format!("d_model {d} must be even")));
    }
    let args = [
        Arg::Buf(pe),
        Arg::I32(int(k, "count", count)?),
        Arg::I32(int(k, "d", d)?),
        Arg::I64(lo),
        Arg::F64(scale),
    ];
    dev.launch(k, geo::elementwise((count * d / 2) as u64), &args)
}

/// The device-side routing of `n` rows: idx/gate `[n, groups, k]`, expert counts, offsets
/// `[n_experts + 1]` and the slots sorted by expert.
#[derive(Debug)]
pub struct Routed<B> {
    pub groups: usize,
    pub k: usize,
    pub n_experts: usize,
    pub n_slots: usize,
    pub idx: B,
    pub gate: B,
    pub offsets: B,
    pub slots: B,
}

/// Sigmoid top-k routing of `logits` `[n, groups*experts]` and the dispatch lists, on the
/// device (route_topk, expert_offsets, scatter_slots).
pub fn route<D: Device>(
    dev: &D,
    logits: &D::Buffer,
    n: usize,
    (groups, experts, k): (usize, usize, usize),
) -> Result<Routed<D::Buffer>, GpuError> {
    if experts == 0 || experts > 64 || k == 0 || k > experts {
        let reason = format!("need 1 <= k ({k}) <= experts ({experts}) <= 64");
        return Err(GpuError::shape("route_topk", reason));
    }
    let (n_experts, n_slots) = (groups * experts, n * groups * k);
    let zeros = |len: usize| dev.alloc_zeroed(len * 4);
    let r = Routed {
        groups,
        k,
        n_experts,
        n_slots,
        idx: zeros(n_slots)?,
        gate: zeros(n_slots)?,
        offsets: zeros(n_experts + 1)?,
        slots: zeros(n_slots)?,
    };
    let (counts, cursor) = (zeros(n_experts)?, zeros(n_experts)?);
    let kn = "route_topk";
    let args = [
        Arg::Buf(logits),
        Arg::I64(long(n)),
        Arg::I32(int(kn, "groups", groups)?),
        Arg::I32(int(kn, "experts", experts)?),
        Arg::I32(int(kn, "k", k)?),
        Arg::Buf(&r.idx),
        Arg::Buf(&r.gate),
        Arg::Buf(&counts),
    ];
    dev.launch(kn, geo::elementwise((n * groups) as u64), &args)?;
    let ne = int("expert_offsets", "n_experts", n_experts)?;
    let args = [
        Arg::Buf(&counts),
        Arg::I32(ne),
        Arg::Buf(&r.offsets),
        Arg::Buf(&cursor),
    ];
    dev.launch("expert_offsets", geo::single(), &args)?;
    let args = [
        Arg::Buf(&r.idx),
        Arg::I64(long(n_slots)),
        Arg::Buf(&cursor),
        Arg::Buf(&r.slots),
    ];
    dev.launch("scatter_slots", geo::elementwise(n_slots as u64), &args)?;
    Ok(r)
}

/// How the grouped GEMM's epilogue writes (expert_gemm.cu).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epilogue {
    /// `y[row, group] += gate * acc` (atomic): V, O, σ-MoE second product.
    GatedAdd = 0,
    /// `y[sorted position] = relu(acc)`: σ-MoE hidden.
    ReluStore = 1,
}

/// Where the grouped GEMM reads its rows (strides in elements; expert_gemm.cu).
#[derive(Debug)]
pub struct ExpertInput<'a, B> {
    pub x: &'a B,
    pub row_stride: usize,
    pub group_stride: usize,
    /// Rows addressed by slot (`row*row_stride + group*group_stride`), else by sorted
    /// position (`p*row_stride`).
    pub by_slot: bool,
}

/// Where and how the grouped GEMM writes (strides in elements).
#[derive(Debug)]
pub struct ExpertOutput<'a, B> {
    pub y: &'a B,
    pub row_stride: usize,
    pub group_stride: usize,
    pub epilogue: Epilogue,
}

/// The grouped expert GEMM with its fused epilogue; `w` `[n_experts, in_dim, out_dim]`.
pub fn expert_gemm<D: Device>(
    dev: &D,
    input: ExpertInput<'_, D::Buffer>,
    (w, in_dim, out_dim): (W<'_, D::Buffer>, usize, usize),
    routed: &Routed<D::Buffer>,
    out: ExpertOutput<'_, D::Buffer>,
) -> Result<(), GpuError> {
    let k = "expert_gemm";
    let l = geo::expert_gemm(
        routed.n_slots as u64,
        routed.n_experts as u64,
        out_dim as u64,
    )?;
    let args = [
        Arg::Buf(input.x),
        Arg::I64(long(input.row_stride)),
        Arg::I64(long(input.group_stride)),
        Arg::I32(i32::from(input.by_slot)),
        Arg::I32(int(k, "groups", routed.groups)?),
        Arg::I32(int(k, "k", routed.k)?),
        Arg::Buf(w.buf),
        Arg::I32(w.wtype.code()),
        Arg::I32(int(k, "in_dim", in_dim)?),
        Arg::I32(int(k, "out_dim", out_dim)?),
        Arg::I32(int(k, "n_experts", routed.n_experts)?),
        Arg::Buf(&routed.offsets),
        Arg::Buf(&routed.slots),
        Arg::Buf(&routed.gate),
        Arg::Buf(out.y),
        Arg::I64(long(out.row_stride)),
        Arg::I64(long(out.group_stride)),
        Arg::I32(out.epilogue as i32),
    ];
    dev.launch(k, l, &args)
}

/// Sizes of one attention call: `t` queries per batch row over `tk` keys, read from key and
/// value buffers holding `kv_rows` rows per batch row (`tk`, or a KV cache's capacity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnDims {
    pub batch: usize,
    pub t: usize,
    pub tk: usize,
    pub kv_rows: usize,
    pub heads: usize,
    pub dh: usize,
}

/// Causal flash attention into `out` `[batch*t, heads*dh]`; `kp` = XL position keys
/// `[tk, heads*dh]`.
pub fn flash_attention<D: Device>(
    dev: &D,
    (q, k, v): (&D::Buffer, &D::Buffer, &D::Buffer),
    kp: Option<&D::Buffer>,
    out: &D::Buffer,
    a: AttnDims,
) -> Result<(), GpuError> {
    let kn = "flash_attention";
    if a.tk < a.t || a.tk > a.kv_rows || a.dh == 0 {
        let reason = format!(
            "{} queries over {} keys in {} rows (d_head {})",
            a.t, a.tk, a.kv_rows, a.dh
        );
        return Err(GpuError::shape(kn, reason));
    }
    let l = geo::flash_attention(a.batch as u64, a.t as u64, a.heads as u64)?;
    let local = geo::attention_local_floats(a.dh as u64, kp.is_some()) as usize * 4;
    let args = [
        Arg::Buf(q),
        Arg::Buf(k),
        Arg::Buf(v),
        Arg::Buf(kp.unwrap_or(q)),
        Arg::I32(i32::from(kp.is_some())),
        Arg::Buf(out),
        Arg::I32(int(kn, "batch", a.batch)?),
        Arg::I32(int(kn, "t", a.t)?),
        Arg::I32(int(kn, "tk", a.tk)?),
        Arg::I32(int(kn, "kv_rows", a.kv_rows)?),
        Arg::I32(int(kn, "heads", a.heads)?),
        Arg::I32(int(kn, "dh", a.dh)?),
        Arg::Local(local),
    ];
    dev.launch(kn, l, &args)
}

/// Appends `t_new` rows per batch row (`k_new`, `v_new` `[batch*t_new, hd]`) to the caches
/// `[batch, capacity, hd]` at row `len`.
pub fn kv_append<D: Device>(
    dev: &D,
    (k_new, v_new): (&D::Buffer, &D::Buffer),
    (k_cache, v_cache): (&D::Buffer, &D::Buffer),
    (batch, t_new, hd): (usize, usize, usize),
    (capacity, len): (usize, usize),
) -> Result<(), GpuError> {
    let k = "kv_append";
    if len + t_new > capacity {
        let reason = format!("the cache holds {capacity} rows: {len} + {t_new} do not fit");
        return Err(GpuError::shape(k, reason));
    }
    let args = [
        Arg::Buf(k_new),
        Arg::Buf(v_new),
        Arg::Buf(k_cache),
        Arg::Buf(v_cache),
        Arg::I32(int(k, "batch", batch)?),
        Arg::I32(int(k, "t_new", t_new)?),
        Arg::I32(int(k, "hd", hd)?),
        Arg::I32(int(k, "capacity", capacity)?),
        Arg::I32(int(k, "len", len)?),
    ];
    dev.launch(k, geo::elementwise((batch * t_new * hd) as u64), &args)
}

/// The portable GEMM kernel (`gemm_nt`): what the OpenCL device's [`Device::gemm`] runs.
pub fn gemm_portable<D: Device>(dev: &D, g: &Gemm<'_, D::Buffer>) -> Result<(), GpuError> {
    let k = "gemm_nt";
    if g.m == 0 || g.n == 0 {
        return Ok(());
    }
    let l = geo::gemm(g.m as u64, g.n as u64)?;
    let args = [
        Arg::Buf(g.x),
        Arg::I64(long(g.x_off)),
        Arg::I32(int(k, "ldx", g.ldx)?),
        Arg::Buf(g.w),
        Arg::I64(long(g.w_off)),
        Arg::I32(g.w_type.code()),
        Arg::Buf(g.y),
        Arg::I64(long(g.y_off)),
        Arg::I32(int(k, "ldy", g.ldy)?),
        Arg::I32(int(k, "m", g.m)?),
        Arg::I32(int(k, "n", g.n)?),
        Arg::I32(int(k, "k", g.k)?),
        Arg::F32(g.alpha),
        Arg::F32(g.beta),
    ];
    dev.launch(k, l, &args)
}
