//! `CudaExecutor`: owns the context, a stream, cuBLAS and the loaded kernel modules; uploads
//! weights; one launch function per kernel (grid/block math in [`super::geometry`]).
//!
//! Every launch is asynchronous on the executor's stream; [`CudaExecutor::synchronize`] or a
//! download waits. Activations are f32; weights are f32 or bf16 ([`DeviceWeight`]), with f32
//! accumulation everywhere. The plan op list will drive these functions one op at a time:
//! each takes device buffers and sizes, never a graph.

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::cublas::{CudaBlas, Gemm, GemmConfig, sys as blas_sys};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg, sys,
};
use cudarc::nvrtc::Ptx as DriverPtx;
use switchhead_kernels::cuda::{
    CompileRequest, KernelCache, Nvrtc, PtxCompiler, SOURCES, default_options,
};

use super::geometry::{self, Launch};
use super::probe::{DeviceInfo, imp};
use crate::RuntimeError;

/// A weight on the device in its stored type.
#[derive(Debug)]
pub enum DeviceWeight {
    /// f32.
    F32(CudaSlice<f32>),
    /// bf16 bits.
    Bf16(CudaSlice<u16>),
}

impl DeviceWeight {
    fn suffix(&self) -> &'static str {
        match self {
            DeviceWeight::F32(_) => "f32",
            DeviceWeight::Bf16(_) => "bf16",
        }
    }
}

/// How the grouped GEMM's epilogue writes (expert_gemm.cu).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpilogueMode {
    /// `y[row, group] += gate * acc` (atomic): V, O, σ-MoE second product.
    GatedAdd = 0,
    /// `y[sorted position] = relu(acc)`: σ-MoE hidden.
    ReluStore = 1,
}

/// The device-side routing of `n` rows: idx/gate `[n, groups, k]`, expert counts, offsets and
/// the slots sorted by expert.
#[derive(Debug)]
pub struct Routed {
    pub groups: usize,
    pub k: usize,
    pub n_experts: usize,
    pub n_slots: usize,
    pub idx: CudaSlice<i32>,
    pub gate: CudaSlice<f32>,
    pub counts: CudaSlice<i32>,
    pub offsets: CudaSlice<i32>,
    pub slots: CudaSlice<i32>,
}

/// Operands of one grouped GEMM (strides in elements; expert_gemm.cu documents them).
#[derive(Debug)]
pub struct ExpertGemmArgs<'a> {
    pub x: &'a CudaSlice<f32>,
    pub x_row_stride: i64,
    pub x_group_stride: i64,
    pub in_by_slot: bool,
    pub w: &'a DeviceWeight,
    pub in_dim: usize,
    pub out_dim: usize,
    pub routed: &'a Routed,
    pub y: &'a mut CudaSlice<f32>,
    pub y_row_stride: i64,
    pub y_group_stride: i64,
    pub epilogue: EpilogueMode,
}

/// The GPU side of the CUDA backend.
pub struct CudaExecutor {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    device: DeviceInfo,
    max_shared: u64,
    functions: HashMap<&'static str, CudaFunction>,
}

impl std::fmt::Debug for CudaExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaExecutor")
            .field("device", &self.device)
            .finish()
    }
}

fn unavailable(reason: impl ToString) -> RuntimeError {
    RuntimeError::BackendUnavailable {
        backend: "cuda",
        reason: reason.to_string(),
    }
}

fn exec_err(reason: impl ToString) -> RuntimeError {
    RuntimeError::Execution {
        backend: "cuda",
        reason: reason.to_string(),
    }
}

fn cfg(l: Launch) -> LaunchConfig {
    LaunchConfig {
        grid_dim: l.grid,
        block_dim: l.block,
        shared_mem_bytes: l.shared_bytes,
    }
}

fn int(v: usize, what: &str) -> Result<i32, RuntimeError> {
    i32::try_from(v).map_err(|_| exec_err(format!("{what} = {v} does not fit an int")))
}

/// f32 -> bf16 bits, round to nearest even (as the device's f32_to_bf16).
pub fn f32_to_bf16_bits(f: f32) -> u16 {
    let u = f.to_bits();
    if u & 0x7fff_ffff > 0x7f80_0000 {
        return ((u >> 16) | 0x40) as u16;
    }
    ((u + 0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

impl CudaExecutor {
    /// Context on `ordinal`, a stream, cuBLAS, and every kernel module compiled (or read from
    /// the PTX cache) and loaded.
    pub fn new(ordinal: usize) -> Result<CudaExecutor, RuntimeError> {
        let ctx = imp::context(ordinal).map_err(unavailable)?;
        let device = imp::info(&ctx, ordinal).map_err(unavailable)?;
        let stream = ctx.new_stream().map_err(unavailable)?;
        let blas =
            CudaBlas::new(stream.clone()).map_err(|e| unavailable(format!("cuBLAS: {e}")))?;
        let optin = sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN;
        let max_shared = ctx.attribute(optin).map_err(unavailable)? as u64;
        let functions = load_modules(&ctx, &device.arch())?;
        let attn = &functions["flash_attention"];
        let dyn_attr = sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES;
        attn.set_attribute(dyn_attr, max_shared as i32)
            .map_err(unavailable)?;
        Ok(CudaExecutor {
            ctx,
            stream,
            blas,
            device,
            max_shared,
            functions,
        })
    }

    /// The device.
    pub fn device(&self) -> &DeviceInfo {
        &self.device
    }

    /// The context.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The stream every launch goes to.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Waits for everything queued.
    pub fn synchronize(&self) -> Result<(), RuntimeError> {
        self.stream.synchronize().map_err(exec_err)
    }

    /// Copies host data to a new device buffer.
    pub fn upload<T: cudarc::driver::DeviceRepr>(
        &self,
        host: &[T],
    ) -> Result<CudaSlice<T>, RuntimeError> {
        self.stream.clone_htod(host).map_err(exec_err)
    }

    /// Uploads a weight as f32, or converted to bf16 on the host.
    pub fn upload_weight(&self, host: &[f32], bf16: bool) -> Result<DeviceWeight, RuntimeError> {
        if !bf16 {
            return Ok(DeviceWeight::F32(self.upload(host)?));
        }
        let bits: Vec<u16> = host.iter().map(|&v| f32_to_bf16_bits(v)).collect();
        Ok(DeviceWeight::Bf16(self.upload(&bits)?))
    }

    /// A zeroed device buffer.
    pub fn zeros<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
        &self,
        n: usize,
    ) -> Result<CudaSlice<T>, RuntimeError> {
        self.stream.alloc_zeros(n.max(1)).map_err(exec_err)
    }

    /// Copies a device buffer back (waits for the stream).
    pub fn download<T: cudarc::driver::DeviceRepr>(
        &self,
        dev: &CudaSlice<T>,
    ) -> Result<Vec<T>, RuntimeError> {
        self.stream.clone_dtoh(dev).map_err(exec_err)
    }

    fn function(&self, name: &str) -> Result<&CudaFunction, RuntimeError> {
        self.functions
            .get(name)
            .ok_or_else(|| exec_err(format!("kernel {name} not loaded")))
    }

    /// `out[r] = table[tokens[r]]`.
    pub fn embedding(
        &self,
        tokens: &CudaSlice<i64>,
        table: &DeviceWeight,
        out: &mut CudaSlice<f32>,
        rows: usize,
        d: usize,
        vocab: usize,
    ) -> Result<(), RuntimeError> {
        let l = geometry::per_row("embedding", rows as u64).map_err(exec_err)?;
        let f = self
            .function(&format!("embedding_{}", table.suffix()))?
            .clone();
        let (rows, d, vocab) = (int(rows, "rows")?, int(d, "d")?, int(vocab, "vocab")?);
        let mut b = self.stream.launch_builder(&f);
        b.arg(tokens);
        push_weight(&mut b, table);
        b.arg(out).arg(&rows).arg(&d).arg(&vocab);
        // SAFETY: argument list matches embedding.cu; sizes checked by the caller's shapes.
        unsafe { b.launch(cfg(l)) }.map(drop).map_err(exec_err)
    }

    /// LayerNorm of `rows` rows of width `d`.
    #[allow(clippy::too_many_arguments)]
    pub fn layer_norm(
        &self,
        x: &CudaSlice<f32>,
        gamma: &DeviceWeight,
        beta: &DeviceWeight,
        y: &mut CudaSlice<f32>,
        rows: usize,
        d: usize,
        eps: f32,
    ) -> Result<(), RuntimeError> {
        let l = geometry::per_row("layer_norm", rows as u64).map_err(exec_err)?;
        if gamma.suffix() != beta.suffix() {
            return Err(exec_err("layer_norm: gamma and beta differ in type"));
        }
        let f = self
            .function(&format!("layer_norm_{}", gamma.suffix()))?
            .clone();
        let (rows, d) = (int(rows, "rows")?, int(d, "d")?);
        let mut b = self.stream.launch_builder(&f);
        b.arg(x);
        push_weight(&mut b, gamma);
        push_weight(&mut b, beta);
        b.arg(y).arg(&rows).arg(&d).arg(&eps);
        // SAFETY: argument list matches layer_norm.cu.
        unsafe { b.launch(cfg(l)) }.map(drop).map_err(exec_err)
    }

    /// `y[n, out] = alpha * x[n, in] @ w^T` with `w` `[out, in]` row-major (cuBLAS, f32).
    #[allow(clippy::too_many_arguments)]
    pub fn linear(
        &self,
        x: &CudaSlice<f32>,
        w: &CudaSlice<f32>,
        y: &mut CudaSlice<f32>,
        n: usize,
        in_dim: usize,
        out_dim: usize,
        alpha: f32,
    ) -> Result<(), RuntimeError> {
        let c = gemm_config(n, in_dim, out_dim, alpha)?;
        // Column-major view: y^T [out, n] = w [out, in] (w^T stored) x x^T [in, n].
        // SAFETY: buffer sizes are n*in, out*in and n*out by the caller's shapes.
        unsafe { self.blas.gemm(c, w, x, y) }.map_err(|e| exec_err(format!("cuBLAS sgemm: {e}")))
    }

    /// `y = act(y + bias) (+ residual)`, element-wise.
    pub fn bias_act(
        &self,
        y: &mut CudaSlice<f32>,
        bias: &DeviceWeight,
        residual: Option<&CudaSlice<f32>>,
        rows: usize,
        cols: usize,
        relu: bool,
    ) -> Result<(), RuntimeError> {
        let l = geometry::elementwise((rows * cols) as u64);
        let f = self
            .function(&format!("bias_act_{}", bias.suffix()))?
            .clone();
        let (rows, cols, relu) = (rows as i64, int(cols, "cols")?, relu as i32);
        let null = 0u64;
        let mut b = self.stream.launch_builder(&f);
        b.arg(y);
        push_weight(&mut b, bias);
        match residual {
            Some(r) => b.arg(r),
            None => b.arg(&null),
        };
        b.arg(&rows).arg(&cols).arg(&relu);
        // SAFETY: argument list matches elementwise.cu; a null residual is allowed.
        unsafe { b.launch(cfg(l)) }.map(drop).map_err(exec_err)
    }

    /// `y += x` over `n` elements.
    pub fn add_inplace(
        &self,
        y: &mut CudaSlice<f32>,
        x: &CudaSlice<f32>,
        n: usize,
    ) -> Result<(), RuntimeError> {
        let f = self.function("add_inplace")?.clone();
        let n64 = n as i64;
        let mut b = self.stream.launch_builder(&f);
        b.arg(y).arg(x).arg(&n64);
        // SAFETY: argument list matches elementwise.cu.
        unsafe { b.launch(cfg(geometry::elementwise(n as u64))) }
            .map(drop)
            .map_err(exec_err)
    }

    /// E = 1: `r[row, h, :] *= sigmoid(logits[row, h])`.
    pub fn gate_heads(
        &self,
        r: &mut CudaSlice<f32>,
        logits: &CudaSlice<f32>,
        rows: usize,
        heads: usize,
        dh: usize,
    ) -> Result<(), RuntimeError> {
        let f = self.function("gate_heads")?.clone();
        let l = geometry::elementwise((rows * heads * dh) as u64);
        let (rows, heads, dh) = (rows as i64, int(heads, "heads")?, int(dh, "dh")?);
        let mut b = self.stream.launch_builder(&f);
        b.arg(r).arg(logits).arg(&rows).arg(&heads).arg(&dh);
        // SAFETY: argument list matches elementwise.cu.
        unsafe { b.launch(cfg(l)) }.map(drop).map_err(exec_err)
    }

    /// RoPE in place on `[rows, heads*dh]`; row r at position `pos_offset + r % period`.
    #[allow(clippy::too_many_arguments)]
    pub fn rope(
        &self,
        x: &mut CudaSlice<f32>,
        rows: usize,
        heads: usize,
        dh: usize,
        n_rot: usize,
        base: f64,
        period: usize,
        pos_offset: usize,
    ) -> Result<(), RuntimeError> {
        if !n_rot.is_multiple_of(2) || n_rot == 0 || n_rot > dh || period == 0 {
            return Err(exec_err(format!(
                "rope: n_rot {n_rot} must be even, in 2..={dh}"
            )));
        }
        let f = self.function("rope_inplace")?.clone();
        let l = geometry::elementwise((rows * heads * n_rot / 2) as u64);
        let (rows, heads, dh, n_rot) = (
            rows as i64,
            int(heads, "heads")?,
            int(dh, "dh")?,
            int(n_rot, "n_rot")?,
        );
        let (period, pos_offset) = (period as i64, pos_offset as i64);
        let mut b = self.stream.launch_builder(&f);
        b.arg(x)
            .arg(&rows)
            .arg(&heads)
            .arg(&dh)
            .arg(&n_rot)
            .arg(&base)
            .arg(&period)
            .arg(&pos_offset);
        // SAFETY: argument list matches positions.cu.
        unsafe { b.launch(cfg(l)) }.map(drop).map_err(exec_err)
    }

    /// The scaled XL sinusoid `[count, d]` for positions `lo..lo+count`.
    pub fn xl_sinusoid(
        &self,
        pe: &mut CudaSlice<f32>,
        count: usize,
        d: usize,
        lo: i64,
        scale: f64,
    ) -> Result<(), RuntimeError> {
        if !d.is_multiple_of(2) {
            return Err(exec_err(format!("xl_sinusoid: d_model {d} must be even")));
        }
        let f = self.function("xl_sinusoid")?.clone();
        let l = geometry::elementwise((count * d / 2) as u64);
        let (count, d) = (int(count, "count")?, int(d, "d")?);
        let mut b = self.stream.launch_builder(&f);
        b.arg(pe).arg(&count).arg(&d).arg(&lo).arg(&scale);
        // SAFETY: argument list matches positions.cu.
        unsafe { b.launch(cfg(l)) }.map(drop).map_err(exec_err)
    }

    /// Sigmoid top-k routing of `logits` `[n, groups*experts]` and the dispatch lists, on the
    /// device (route_topk, expert_offsets, scatter_slots).
    pub fn route(
        &self,
        logits: &CudaSlice<f32>,
        n: usize,
        groups: usize,
        experts: usize,
        k: usize,
    ) -> Result<Routed, RuntimeError> {
        if experts == 0 || experts > 64 || k == 0 || k > experts {
            return Err(exec_err(format!(
                "route: need 1 <= k ({k}) <= experts ({experts}) <= 64"
            )));
        }
        let n_experts = groups * experts;
        let n_slots = n * groups * k;
        let scan = geometry::expert_offsets(n_experts as u64).map_err(exec_err)?;
        let mut r = Routed {
            groups,
            k,
            n_experts,
            n_slots,
            idx: self.zeros(n_slots)?,
            gate: self.zeros(n_slots)?,
            counts: self.zeros(n_experts)?,
            offsets: self.zeros(n_experts + 1)?,
            slots: self.zeros(n_slots)?,
        };
        let mut cursor: CudaSlice<i32> = self.zeros(n_experts)?;
        let (n64, g, e, kk, ne) = (
            n as i64,
            int(groups, "groups")?,
            int(experts, "experts")?,
            int(k, "k")?,
            int(n_experts, "n_experts")?,
        );
        let f = self.function("route_topk")?.clone();
        let mut b = self.stream.launch_builder(&f);
        b.arg(logits)
            .arg(&n64)
            .arg(&g)
            .arg(&e)
            .arg(&kk)
            .arg(&mut r.idx)
            .arg(&mut r.gate)
            .arg(&mut r.counts);
        // SAFETY: argument lists match routing.cu; buffers sized above.
        unsafe { b.launch(cfg(geometry::elementwise((n * groups) as u64))) }.map_err(exec_err)?;
        let f = self.function("expert_offsets")?.clone();
        let mut b = self.stream.launch_builder(&f);
        b.arg(&r.counts)
            .arg(&ne)
            .arg(&mut r.offsets)
            .arg(&mut cursor);
        unsafe { b.launch(cfg(scan)) }.map_err(exec_err)?;
        let f = self.function("scatter_slots")?.clone();
        let slots64 = n_slots as i64;
        let mut b = self.stream.launch_builder(&f);
        b.arg(&r.idx)
            .arg(&slots64)
            .arg(&mut cursor)
            .arg(&mut r.slots);
        unsafe { b.launch(cfg(geometry::elementwise(n_slots as u64))) }.map_err(exec_err)?;
        Ok(r)
    }

    /// The grouped expert GEMM with its fused epilogue.
    pub fn expert_gemm(&self, a: ExpertGemmArgs<'_>) -> Result<(), RuntimeError> {
        let r = a.routed;
        let l = geometry::expert_gemm(r.n_slots as u64, r.n_experts as u64, a.out_dim as u64)
            .map_err(exec_err)?;
        let f = self
            .function(&format!("expert_gemm_{}", a.w.suffix()))?
            .clone();
        let (in_by_slot, groups, k) = (
            a.in_by_slot as i32,
            int(r.groups, "groups")?,
            int(r.k, "k")?,
        );
        let (in_dim, out_dim, ne) = (
            int(a.in_dim, "in_dim")?,
            int(a.out_dim, "out_dim")?,
            int(r.n_experts, "n_experts")?,
        );
        let epilogue = a.epilogue as i32;
        let mut b = self.stream.launch_builder(&f);
        b.arg(a.x)
            .arg(&a.x_row_stride)
            .arg(&a.x_group_stride)
            .arg(&in_by_slot)
            .arg(&groups)
            .arg(&k);
        push_weight(&mut b, a.w);
        b.arg(&in_dim)
            .arg(&out_dim)
            .arg(&ne)
            .arg(&r.offsets)
            .arg(&r.slots)
            .arg(&r.gate);
        b.arg(a.y)
            .arg(&a.y_row_stride)
            .arg(&a.y_group_stride)
            .arg(&epilogue);
        // SAFETY: argument list matches expert_gemm.cu; strides describe the caller's buffers.
        unsafe { b.launch(cfg(l)) }.map(drop).map_err(exec_err)
    }

    /// Causal flash attention; `kp` = XL position keys `[tk, heads*dh]`.
    #[allow(clippy::too_many_arguments)]
    pub fn flash_attention(
        &self,
        q: &CudaSlice<f32>,
        k: &CudaSlice<f32>,
        v: &CudaSlice<f32>,
        kp: Option<&CudaSlice<f32>>,
        out: &mut CudaSlice<f32>,
        (batch, t, tk): (usize, usize, usize),
        heads: usize,
        dh: usize,
    ) -> Result<(), RuntimeError> {
        let l = geometry::flash_attention(
            batch as u64,
            t as u64,
            heads as u64,
            dh as u64,
            kp.is_some(),
            self.max_shared,
        )
        .map_err(exec_err)?;
        if tk < t {
            return Err(exec_err(format!(
                "flash_attention: {tk} keys < {t} queries"
            )));
        }
        let f = self.function("flash_attention")?.clone();
        let (batch, t, tk, heads, dh) = (
            int(batch, "batch")?,
            int(t, "t")?,
            int(tk, "tk")?,
            int(heads, "heads")?,
            int(dh, "dh")?,
        );
        let null = 0u64;
        let mut b = self.stream.launch_builder(&f);
        b.arg(q).arg(k).arg(v);
        match kp {
            Some(kp) => b.arg(kp),
            None => b.arg(&null),
        };
        b.arg(out).arg(&batch).arg(&t).arg(&tk).arg(&heads).arg(&dh);
        // SAFETY: argument list matches attention.cu; shared memory opted in at load.
        unsafe { b.launch(cfg(l)) }.map(drop).map_err(exec_err)
    }

    /// Appends `t_new` rows per batch row to the KV cache at position `len`.
    #[allow(clippy::too_many_arguments)]
    pub fn kv_append(
        &self,
        k_new: &CudaSlice<f32>,
        v_new: &CudaSlice<f32>,
        k_cache: &mut CudaSlice<f32>,
        v_cache: &mut CudaSlice<f32>,
        (batch, t_new, heads, dh): (usize, usize, usize, usize),
        capacity: usize,
        len: usize,
    ) -> Result<(), RuntimeError> {
        if len + t_new > capacity {
            return Err(exec_err(format!(
                "kv cache full: {len} + {t_new} > {capacity}"
            )));
        }
        let f = self.function("kv_append")?.clone();
        let l = geometry::elementwise((batch * t_new * heads * dh) as u64);
        let v: Vec<i32> = [batch, t_new, heads, dh, capacity, len]
            .iter()
            .map(|&x| int(x, "kv size"))
            .collect::<Result<_, _>>()?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(k_new).arg(v_new).arg(k_cache).arg(v_cache);
        for x in &v {
            b.arg(x);
        }
        // SAFETY: argument list matches decode.cu; capacity checked above.
        unsafe { b.launch(cfg(l)) }.map(drop).map_err(exec_err)
    }

    /// Attention of `t_q` new queries over the cache holding `len_total` keys.
    #[allow(clippy::too_many_arguments)]
    pub fn decode_attention(
        &self,
        q: &CudaSlice<f32>,
        k_cache: &CudaSlice<f32>,
        v_cache: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
        (batch, t_q, heads, dh): (usize, usize, usize, usize),
        capacity: usize,
        len_total: usize,
    ) -> Result<(), RuntimeError> {
        let l = geometry::decode_attention(batch as u64, heads as u64, t_q as u64, dh as u64)
            .map_err(exec_err)?;
        if t_q > len_total || len_total > capacity {
            return Err(exec_err(format!(
                "decode: {t_q} queries, {len_total} keys, capacity {capacity}"
            )));
        }
        let f = self.function("decode_attention")?.clone();
        let v: Vec<i32> = [batch, t_q, heads, dh, capacity, len_total]
            .iter()
            .map(|&x| int(x, "decode size"))
            .collect::<Result<_, _>>()?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(q).arg(k_cache).arg(v_cache).arg(out);
        for x in &v {
            b.arg(x);
        }
        // SAFETY: argument list matches decode.cu.
        unsafe { b.launch(cfg(l)) }.map(drop).map_err(exec_err)
    }
}

fn push_weight<'a>(b: &mut cudarc::driver::LaunchArgs<'a>, w: &'a DeviceWeight) {
    match w {
        DeviceWeight::F32(s) => b.arg(s),
        DeviceWeight::Bf16(s) => b.arg(s),
    };
}

/// cuBLAS column-major parameters of the row-major `y = alpha * x @ w^T`.
pub fn gemm_config(
    n: usize,
    in_dim: usize,
    out_dim: usize,
    alpha: f32,
) -> Result<GemmConfig<f32>, RuntimeError> {
    Ok(GemmConfig {
        transa: blas_sys::cublasOperation_t::CUBLAS_OP_T,
        transb: blas_sys::cublasOperation_t::CUBLAS_OP_N,
        m: int(out_dim, "out_dim")?,
        n: int(n, "rows")?,
        k: int(in_dim, "in_dim")?,
        alpha,
        lda: int(in_dim, "in_dim")?,
        ldb: int(in_dim, "in_dim")?,
        beta: 0.0,
        ldc: int(out_dim, "out_dim")?,
    })
}

/// Compiles (or reads from the cache) and loads every module; NVRTC missing falls back to
/// cached or prebuilt PTX through the driver.
fn load_modules(
    ctx: &Arc<CudaContext>,
    arch: &str,
) -> Result<HashMap<&'static str, CudaFunction>, RuntimeError> {
    let cache = KernelCache::from_env();
    let nvrtc = Nvrtc::load();
    let compiler = nvrtc.as_ref().map(|n| n as &dyn PtxCompiler);
    let options = default_options();
    let mut functions = HashMap::new();
    for s in SOURCES {
        let source = s.full_source();
        let req = CompileRequest {
            name: s.name,
            source: &source,
            arch,
            options: &options,
        };
        let ptx = cache.get_or_compile(&req, compiler).map_err(unavailable)?;
        let module = ctx
            .load_module(DriverPtx::from_src(ptx.text))
            .map_err(|e| unavailable(format!("loading {} PTX ({:?}): {e}", s.name, ptx.origin)))?;
        for entry in s.entry_points {
            let f = module
                .load_function(entry)
                .map_err(|e| unavailable(format!("{entry}: {e}")))?;
            functions.insert(*entry, f);
        }
    }
    Ok(functions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounding_matches_torch() {
        assert_eq!(f32_to_bf16_bits(1.0), 0x3f80);
        // 1 + 2^-8 is a tie between 1 and 1 + 2^-7: rounds to even (1.0).
        assert_eq!(f32_to_bf16_bits(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(f32_to_bf16_bits(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(f32_to_bf16_bits(-2.0), 0xc000);
        assert_eq!(f32_to_bf16_bits(f32::NAN) & 0x7fc0, 0x7fc0);
    }

    #[test]
    fn gemm_config_is_the_row_major_transpose_trick() {
        let c = gemm_config(5, 7, 3, 0.5).unwrap();
        assert_eq!((c.m, c.n, c.k, c.lda, c.ldb, c.ldc), (3, 5, 7, 7, 7, 3));
        assert_eq!(c.alpha, 0.5);
    }

    /// On a GPU host: compile everything and run a LayerNorm against the CPU formula.
    #[test]
    fn executor_loads_and_runs_a_layer_norm_where_a_device_exists() {
        let ex = match CudaExecutor::new(0) {
            Ok(ex) => ex,
            Err(e) => {
                eprintln!("SKIPPED executor test: {e}");
                return;
            }
        };
        let (rows, d) = (3, 10);
        let x: Vec<f32> = (0..rows * d).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let gamma = ex.upload_weight(&vec![1.5; d], false).unwrap();
        let beta = ex.upload_weight(&vec![0.25; d], false).unwrap();
        let dx = ex.upload(&x).unwrap();
        let mut dy = ex.zeros::<f32>(rows * d).unwrap();
        ex.layer_norm(&dx, &gamma, &beta, &mut dy, rows, d, 1e-5)
            .unwrap();
        let y = ex.download(&dy).unwrap();
        for r in 0..rows {
            let row = &x[r * d..(r + 1) * d];
            let mean = row.iter().sum::<f32>() / d as f32;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / d as f32;
            for i in 0..d {
                let want = (row[i] - mean) / (var + 1e-5).sqrt() * 1.5 + 0.25;
                assert!(
                    (y[r * d + i] - want).abs() < 1e-4,
                    "{r},{i}: {} vs {want}",
                    y[r * d + i]
                );
            }
        }
    }
}
