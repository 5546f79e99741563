//! The CUDA [`Device`]: cudarc over the driver API (libcuda, libnvrtc and libcublas opened at
//! run time), one stream, cuBLAS on that stream, and every [`SOURCES`] module compiled by NVRTC
//! or read from the PTX cache ([`KernelCache`]), then loaded; each entry point's function is
//! kept by name.
//!
//! Invariants: every call goes to the device's one stream, in order ([`Device::download`] and
//! [`Device::synchronize`] wait for it); a device pointer is only formed after its byte range
//! was checked against the buffer ([`GpuError::Shape`] otherwise), so cuBLAS and the copies
//! never touch memory outside a buffer; [`Arg::Local`] is the launch's dynamic shared memory,
//! never a kernel parameter, and each function may take the device's opt-in maximum of it
//! (less its static shared memory); a 0-byte buffer holds one byte on the device.

use std::collections::HashMap;
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use cudarc::cublas::sys::{
    cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType_t,
};
use cudarc::cublas::{CudaBlas, result as blas};
use cudarc::driver::sys::{self, CUdevice_attribute, CUdeviceptr, CUfunction_attribute};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DriverError,
    LaunchArgs, LaunchConfig, PushKernelArg, result as drv,
};
use cudarc::nvrtc::Ptx as DriverPtx;

use super::{Arg, Device, DeviceDesc, Dialect, Gemm, GpuError, KernelSource, Launch, SOURCES};
use super::{WType, launch::cast_rows_bf16, one_line_log, panic_text};
use crate::cuda::{
    CompileRequest, CudaKernelError, KernelCache, Nvrtc, PtxCompiler, default_options,
};

const API: &str = "cuda";
/// Longest compiler log kept in a [`GpuError::Build`].
const MAX_LOG: usize = 2000;
const MIB: u64 = 1 << 20;

/// A device buffer: a cudarc allocation and its length in bytes.
#[derive(Debug)]
pub struct CudaBuffer {
    slice: CudaSlice<u8>,
    len: usize,
}

impl CudaBuffer {
    /// Length in bytes (as asked for; a 0-byte buffer holds one byte on the device).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a 0-byte buffer.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A loaded kernel and the limits a launch of it is checked against.
#[derive(Debug)]
struct Function {
    func: CudaFunction,
    max_threads: u32,
    max_dynamic_shared: u32,
}

/// A CUDA device with every kernel module loaded (see the module docs).
pub struct CudaDevice {
    desc: DeviceDesc,
    functions: HashMap<&'static str, Function>,
    // Field order is drop order: the functions (and their modules), cuBLAS, the stream.
    blas: CudaBlas,
    stream: Arc<CudaStream>,
    _ctx: Arc<CudaContext>,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaDevice")
            .field("desc", &self.desc)
            .field("functions", &self.functions.len())
            .finish()
    }
}

fn call_err(call: &str, reason: impl Into<String>) -> GpuError {
    GpuError::Call {
        api: API,
        call: call.into(),
        reason: reason.into(),
    }
}

/// A `map_err` adaptor for a driver call named `call`.
fn drv_err(call: &'static str) -> impl Fn(DriverError) -> GpuError {
    move |e| call_err(call, e.to_string())
}

fn unavailable(reason: impl Into<String>) -> GpuError {
    GpuError::Unavailable {
        api: API,
        reason: reason.into(),
    }
}

fn build_error(module: &str, device: &str, log: &str) -> GpuError {
    GpuError::Build {
        api: API,
        module: module.into(),
        device: device.into(),
        log: one_line_log(log, MAX_LOG),
    }
}

/// The compile path's errors in the device layer's terms.
fn kernel_error(e: CudaKernelError, device: &str) -> GpuError {
    match e {
        CudaKernelError::Compile { name, log, .. } => build_error(&name, device, &log),
        CudaKernelError::NvrtcUnavailable { .. } | CudaKernelError::NoPtx { .. } => {
            unavailable(e.to_string())
        }
        CudaKernelError::Io { .. } => call_err("reading the PTX cache", e.to_string()),
    }
}

fn check_range(what: &str, len: usize, offset: usize, bytes: usize) -> Result<(), GpuError> {
    match offset.checked_add(bytes) {
        Some(end) if end <= len => Ok(()),
        _ => Err(GpuError::shape(
            what,
            format!("bytes {offset}..{offset}+{bytes} are outside a buffer of {len} bytes"),
        )),
    }
}

/// cuBLAS on `stream`, or why not (libcublas is probed first: cudarc panics without it).
fn cublas(stream: &Arc<CudaStream>) -> Result<CudaBlas, GpuError> {
    // SAFETY: only tries dlopen on cudarc's candidate names.
    let present = catch_unwind(|| unsafe { cudarc::cublas::sys::is_culib_present() });
    if !present.unwrap_or(false) {
        return Err(unavailable(
            "libcublas not found (put the CUDA toolkit's lib directory on LD_LIBRARY_PATH)",
        ));
    }
    CudaBlas::new(stream.clone()).map_err(|e| call_err("cublasCreate", e.to_string()))
}

/// What compiling and loading the modules needs.
struct Loader<'a> {
    ctx: &'a Arc<CudaContext>,
    cache: KernelCache,
    compiler: Result<&'a dyn PtxCompiler, &'a CudaKernelError>,
    options: Vec<String>,
    arch: &'a str,
    device: String,
    max_shared_optin: i32,
}

impl Loader<'_> {
    fn module(&self, s: &KernelSource) -> Result<Arc<CudaModule>, GpuError> {
        let source = s.source_for(Dialect::Cuda);
        let req = CompileRequest {
            name: s.name,
            source: &source,
            arch: self.arch,
            options: &self.options,
        };
        let ptx = self
            .cache
            .get_or_compile(&req, self.compiler)
            .map_err(|e| kernel_error(e, &self.device))?;
        let origin = format!("{:?}", ptx.origin);
        // cudarc panics on a NUL byte in the text (a corrupt cache file, say).
        let loaded = catch_unwind(AssertUnwindSafe(|| {
            self.ctx.load_module(DriverPtx::from_src(ptx.text))
        }));
        let log = |e: String| format!("loading its PTX ({origin}): {e}");
        match loaded {
            Ok(Ok(m)) => Ok(m),
            Ok(Err(e)) => Err(build_error(s.name, &self.device, &log(e.to_string()))),
            Err(p) => Err(build_error(s.name, &self.device, &log(panic_text(&*p)))),
        }
    }

    fn function(
        &self,
        module: &Arc<CudaModule>,
        s: &KernelSource,
        entry: &str,
    ) -> Result<Function, GpuError> {
        let func = module
            .load_function(entry)
            .map_err(|e| build_error(s.name, &self.device, &format!("entry point {entry}: {e}")))?;
        let static_shared = func
            .shared_size_bytes()
            .map_err(drv_err("cuFuncGetAttribute(SHARED_SIZE_BYTES)"))?;
        let max_threads = func
            .max_threads_per_block()
            .map_err(drv_err("cuFuncGetAttribute(MAX_THREADS_PER_BLOCK)"))?;
        let dynamic = (self.max_shared_optin - static_shared).max(0);
        let attr = CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES;
        func.set_attribute(attr, dynamic)
            .map_err(drv_err("cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)"))?;
        Ok(Function {
            func,
            max_threads: max_threads.max(0) as u32,
            max_dynamic_shared: dynamic as u32,
        })
    }

    fn load(&self, sources: &[KernelSource]) -> Result<HashMap<&'static str, Function>, GpuError> {
        let mut functions = HashMap::new();
        for s in sources {
            let module = self.module(s)?;
            for &entry in s.entry_points {
                functions.insert(entry, self.function(&module, s, entry)?);
            }
        }
        Ok(functions)
    }
}

/// One slot of a launch's argument list, owning the scalars until the launch.
enum Slot<'a> {
    Buf(&'a CudaBuffer),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    Local,
}

impl<'a> Slot<'a> {
    fn of(a: &Arg<'a, CudaBuffer>) -> Slot<'a> {
        match *a {
            Arg::Buf(b) => Slot::Buf(b),
            Arg::I32(v) => Slot::I32(v),
            Arg::I64(v) => Slot::I64(v),
            Arg::F32(v) => Slot::F32(v),
            Arg::F64(v) => Slot::F64(v),
            Arg::Local(_) => Slot::Local,
        }
    }

    /// Pushes the slot's parameter (buffers as their device pointer, scalars by reference).
    fn push<'b>(&'b self, b: &mut LaunchArgs<'b>) {
        match self {
            Slot::Buf(buf) => b.arg(&buf.slice),
            Slot::I32(v) => b.arg(v),
            Slot::I64(v) => b.arg(v),
            Slot::F32(v) => b.arg(v),
            Slot::F64(v) => b.arg(v),
            // Dynamic shared memory is the launch's size, not a parameter.
            Slot::Local => b,
        };
    }
}

/// The column-major cuBLAS problem of a row-major [`Gemm`]: `y^T [n, m] = op_T(w) x^T`, with
/// w `[n, k]` read as a column-major `k x n` matrix and x `[m, k]` as `k x m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ColMajor {
    m: i32,
    n: i32,
    k: i32,
    lda: i32,
    ldb: i32,
    ldc: i32,
}

fn int(what: &str, v: usize) -> Result<i32, GpuError> {
    i32::try_from(v).map_err(|_| GpuError::shape("gemm", format!("{what} = {v} exceeds an int")))
}

impl ColMajor {
    /// The problem with x rows `ldx` apart (the bf16 path packs them, `ldx = k`).
    fn of<B>(g: &Gemm<'_, B>, ldx: usize) -> Result<ColMajor, GpuError> {
        Ok(ColMajor {
            m: int("n", g.n)?,
            n: int("m", g.m)?,
            k: int("k", g.k)?,
            lda: int("k", g.k.max(1))?,
            ldb: int("ldx", ldx.max(1))?,
            ldc: int("ldy", g.ldy.max(1))?,
        })
    }
}

/// One past the last element a `rows x cols` view at `off`, rows `ld` apart, reads.
fn view_end(off: usize, rows: usize, ld: usize, cols: usize) -> u128 {
    off as u128 + (rows as u128 - 1) * ld as u128 + cols as u128
}

fn check_operand(what: &str, len: usize, end: u128, elem: usize) -> Result<(), GpuError> {
    let need = end * elem as u128;
    if need > len as u128 {
        let reason = format!("{what} needs {need} bytes, its buffer has {len}");
        return Err(GpuError::shape("gemm", reason));
    }
    Ok(())
}

/// Checks every operand of `g` (m, n > 0) lies inside its buffer (`len` bytes).
fn check_gemm<B>(g: &Gemm<'_, B>, len: impl Fn(&B) -> usize) -> Result<(), GpuError> {
    if g.ldx < g.k || g.ldy < g.n {
        let reason = format!("ldx {} < k {} or ldy {} < n {}", g.ldx, g.k, g.ldy, g.n);
        return Err(GpuError::shape("gemm", reason));
    }
    let (x_end, y_end) = (
        view_end(g.x_off, g.m, g.ldx, g.k),
        view_end(g.y_off, g.m, g.ldy, g.n),
    );
    let w_end = g.w_off as u128 + g.n as u128 * g.k as u128;
    check_operand("x", len(g.x), x_end, 4)?;
    check_operand("w", len(g.w), w_end, g.w_type.size())?;
    check_operand("y", len(g.y), y_end, 4)
}

impl CudaDevice {
    /// A stream on `ctx`, cuBLAS on it, and every [`SOURCES`] module compiled for `arch`
    /// (`compute_90`, say) or read from the PTX cache, then loaded.
    pub fn new(
        ctx: Arc<CudaContext>,
        desc: DeviceDesc,
        arch: &str,
    ) -> Result<CudaDevice, GpuError> {
        catch_unwind(AssertUnwindSafe(|| CudaDevice::create(ctx, desc, arch)))
            .unwrap_or_else(|p| Err(call_err("creating the device", panic_text(&*p))))
    }

    fn create(ctx: Arc<CudaContext>, desc: DeviceDesc, arch: &str) -> Result<Self, GpuError> {
        let stream = ctx.new_stream().map_err(drv_err("cuStreamCreate"))?;
        let blas = cublas(&stream)?;
        let optin = CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN;
        let max_shared_optin = ctx.attribute(optin).map_err(drv_err(
            "cuDeviceGetAttribute(MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)",
        ))?;
        let nvrtc = Nvrtc::load();
        let loader = Loader {
            ctx: &ctx,
            cache: KernelCache::from_env(),
            compiler: nvrtc.as_ref().map(|n| n as &dyn PtxCompiler),
            options: default_options(),
            arch,
            device: format!("{} ({arch})", desc.name),
            max_shared_optin,
        };
        let functions = loader.load(SOURCES)?;
        Ok(CudaDevice {
            desc,
            functions,
            blas,
            stream,
            _ctx: ctx,
        })
    }

    fn bind(&self) -> Result<(), GpuError> {
        self.stream
            .context()
            .bind_to_thread()
            .map_err(drv_err("cuCtxSetCurrent"))
    }

    /// The device address of `buf`'s first byte. One stream: the slice's events order nothing.
    fn base(&self, buf: &CudaBuffer) -> CUdeviceptr {
        let (ptr, _record) = buf.slice.device_ptr(&self.stream);
        ptr
    }

    /// The address of byte `offset` of `buf`, once `offset..offset + bytes` is checked.
    fn ptr_at(
        &self,
        what: &str,
        buf: &CudaBuffer,
        offset: usize,
        bytes: usize,
    ) -> Result<CUdeviceptr, GpuError> {
        check_range(what, buf.len, offset, bytes)?;
        Ok(self.base(buf) + offset as u64)
    }

    fn alloc_error(&self, bytes: usize, e: DriverError) -> GpuError {
        if e.0 != sys::cudaError_enum::CUDA_ERROR_OUT_OF_MEMORY {
            return call_err("cuMemAlloc", e.to_string());
        }
        GpuError::OutOfMemory {
            api: API,
            device: self.desc.name.clone(),
            what: format!("a buffer of {bytes} bytes"),
            needed_mib: (bytes as u64).div_ceil(MIB),
            available_mib: self.desc.memory_bytes / MIB,
        }
    }

    fn function(&self, name: &str) -> Result<&Function, GpuError> {
        self.functions.get(name).ok_or_else(|| {
            GpuError::shape(
                name,
                "no such kernel on this CUDA device (not an entry point of a loaded module)",
            )
        })
    }

    /// The launch configuration of `l`, checked against `f`'s limits.
    fn config(
        &self,
        name: &str,
        f: &Function,
        l: Launch,
        args: &[Arg<'_, CudaBuffer>],
    ) -> Result<LaunchConfig, GpuError> {
        let threads: u64 = l.block.iter().map(|&b| u64::from(b)).product();
        if threads == 0 || l.grid.contains(&0) {
            let reason = format!("empty launch: grid {:?}, block {:?}", l.grid, l.block);
            return Err(GpuError::shape(name, reason));
        }
        if threads > u64::from(f.max_threads) {
            let reason = format!(
                "{threads} threads per block exceed this kernel's limit of {} \
                 (CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK)",
                f.max_threads
            );
            return Err(GpuError::shape(name, reason));
        }
        let shared: u64 = args
            .iter()
            .map(|a| match a {
                Arg::Local(b) => *b as u64,
                _ => 0,
            })
            .sum();
        if shared > u64::from(f.max_dynamic_shared) {
            let reason = format!(
                "{shared} bytes of dynamic shared memory exceed this kernel's limit of {}",
                f.max_dynamic_shared
            );
            return Err(GpuError::shape(name, reason));
        }
        Ok(LaunchConfig {
            grid_dim: (l.grid[0], l.grid[1], l.grid[2]),
            block_dim: (l.block[0], l.block[1], l.block[2]),
            shared_mem_bytes: shared as u32,
        })
    }

    /// `y = alpha * x @ w^T + beta * y` in f32 (cuBLAS sgemm; default math mode, no TF32).
    fn sgemm(&self, g: &Gemm<'_, CudaBuffer>, c: ColMajor) -> Result<(), GpuError> {
        let w = self.base(g.w) + (g.w_off * 4) as u64;
        let x = self.base(g.x) + (g.x_off * 4) as u64;
        let y = self.base(g.y) + (g.y_off * 4) as u64;
        self.bind()?;
        // SAFETY: check_gemm put every operand inside its buffer; cuBLAS runs on our stream.
        let r = catch_unwind(|| unsafe {
            blas::sgemm(
                *self.blas.handle(),
                cublasOperation_t::CUBLAS_OP_T,
                cublasOperation_t::CUBLAS_OP_N,
                c.m,
                c.n,
                c.k,
                &g.alpha,
                w as *const f32,
                c.lda,
                x as *const f32,
                c.ldb,
                &g.beta,
                y as *mut f32,
                c.ldc,
            )
        });
        blas_result("cublasSgemm", r)
    }

    /// The bf16-weight GEMM: x rounded to bf16 rows (`cast_rows_bf16`) in a scratch buffer,
    /// then cublasGemmEx with bf16 inputs, f32 output and f32 accumulation.
    fn gemm_bf16(&self, g: &Gemm<'_, CudaBuffer>) -> Result<(), GpuError> {
        let c = ColMajor::of(g, g.k)?;
        let scratch = self.alloc_zeroed(g.m * g.k * 2)?;
        cast_rows_bf16(self, (g.x, g.x_off, g.ldx), &scratch, (g.m, g.k))?;
        let w = self.base(g.w) + (g.w_off * 2) as u64;
        let x = self.base(&scratch);
        let y = self.base(g.y) + (g.y_off * 4) as u64;
        let (alpha, beta) = (&raw const g.alpha, &raw const g.beta);
        self.bind()?;
        // SAFETY: check_gemm put w and y inside their buffers; the scratch holds m*k bf16 and
        // is freed in stream order after the GEMM; cuBLAS runs on our stream.
        let r = catch_unwind(|| unsafe {
            blas::gemm_ex(
                *self.blas.handle(),
                cublasOperation_t::CUBLAS_OP_T,
                cublasOperation_t::CUBLAS_OP_N,
                c.m,
                c.n,
                c.k,
                alpha.cast::<c_void>(),
                w as *const c_void,
                cudaDataType_t::CUDA_R_16BF,
                c.lda,
                x as *const c_void,
                cudaDataType_t::CUDA_R_16BF,
                c.ldb,
                beta.cast::<c_void>(),
                y as *mut c_void,
                cudaDataType_t::CUDA_R_32F,
                c.ldc,
                cublasComputeType_t::CUBLAS_COMPUTE_32F,
                cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        });
        blas_result("cublasGemmEx", r)
    }
}

fn blas_result(
    call: &str,
    r: std::thread::Result<Result<(), cudarc::cublas::result::CublasError>>,
) -> Result<(), GpuError> {
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(call_err(call, e.to_string())),
        Err(p) => Err(call_err(call, panic_text(&*p))),
    }
}

impl Device for CudaDevice {
    type Buffer = CudaBuffer;

    fn desc(&self) -> &DeviceDesc {
        &self.desc
    }

    fn alloc_zeroed(&self, bytes: usize) -> Result<CudaBuffer, GpuError> {
        let slice = self
            .stream
            .alloc_zeros::<u8>(bytes.max(1))
            .map_err(|e| self.alloc_error(bytes, e))?;
        Ok(CudaBuffer { slice, len: bytes })
    }

    fn upload(&self, data: &[u8]) -> Result<CudaBuffer, GpuError> {
        if data.is_empty() {
            return self.alloc_zeroed(0);
        }
        let slice = self
            .stream
            .clone_htod(data)
            .map_err(|e| self.alloc_error(data.len(), e))?;
        Ok(CudaBuffer {
            slice,
            len: data.len(),
        })
    }

    fn write(&self, buf: &CudaBuffer, offset: usize, data: &[u8]) -> Result<(), GpuError> {
        let dst = self.ptr_at("write", buf, offset, data.len())?;
        if data.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: the range is inside the buffer; a copy from pageable memory has read `data`
        // (into the driver's staging memory) when the call returns.
        unsafe { drv::memcpy_htod_async(dst, data, self.stream.cu_stream()) }
            .map_err(drv_err("cuMemcpyHtoDAsync"))
    }

    fn download(&self, buf: &CudaBuffer, offset: usize, out: &mut [u8]) -> Result<(), GpuError> {
        let src = self.ptr_at("download", buf, offset, out.len())?;
        if !out.is_empty() {
            self.bind()?;
            // SAFETY: the range is inside the buffer; `out` is exclusive and outlives the
            // synchronize below.
            unsafe { drv::memcpy_dtoh_async(out, src, self.stream.cu_stream()) }
                .map_err(drv_err("cuMemcpyDtoHAsync"))?;
        }
        self.synchronize()
    }

    fn copy(
        &self,
        src: &CudaBuffer,
        src_off: usize,
        dst: &CudaBuffer,
        dst_off: usize,
        bytes: usize,
    ) -> Result<(), GpuError> {
        let from = self.ptr_at("copy source", src, src_off, bytes)?;
        let to = self.ptr_at("copy destination", dst, dst_off, bytes)?;
        if bytes == 0 {
            return Ok(());
        }
        if std::ptr::eq(src, dst) && src_off.abs_diff(dst_off) < bytes {
            let reason = format!("{bytes} bytes from {src_off} to {dst_off} overlap");
            return Err(GpuError::shape("copy", reason));
        }
        self.bind()?;
        // SAFETY: both ranges are inside their buffers and do not overlap.
        unsafe { drv::memcpy_dtod_async(to, from, bytes, self.stream.cu_stream()) }
            .map_err(drv_err("cuMemcpyDtoDAsync"))
    }

    fn launch(
        &self,
        name: &'static str,
        geometry: Launch,
        args: &[Arg<'_, CudaBuffer>],
    ) -> Result<(), GpuError> {
        let f = self.function(name)?;
        let cfg = self.config(name, f, geometry, args)?;
        let slots: Vec<Slot<'_>> = args.iter().map(Slot::of).collect();
        let mut b = self.stream.launch_builder(&f.func);
        for s in &slots {
            s.push(&mut b);
        }
        // SAFETY: the argument list is the kernel's parameter list (the typed launchers in
        // `launch` keep it so); buffers are valid device allocations of this context.
        unsafe { b.launch(cfg) }
            .map(drop)
            .map_err(|e| call_err(&format!("cuLaunchKernel({name})"), e.to_string()))
    }

    fn gemm(&self, g: &Gemm<'_, CudaBuffer>) -> Result<(), GpuError> {
        if g.m == 0 || g.n == 0 {
            return Ok(());
        }
        check_gemm(g, CudaBuffer::len)?;
        match g.w_type {
            WType::F32 => self.sgemm(g, ColMajor::of(g, g.ldx)?),
            WType::Bf16 => self.gemm_bf16(g),
        }
    }

    fn synchronize(&self) -> Result<(), GpuError> {
        self.stream
            .synchronize()
            .map_err(drv_err("cuStreamSynchronize"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fake {
        len: usize,
    }

    fn gemm<'a>(x: &'a Fake, w: &'a Fake, y: &'a Fake) -> Gemm<'a, Fake> {
        Gemm {
            m: 5,
            n: 3,
            k: 7,
            x,
            x_off: 0,
            ldx: 7,
            w,
            w_off: 0,
            w_type: WType::F32,
            y,
            y_off: 0,
            ldy: 3,
            alpha: 0.5,
            beta: 0.0,
        }
    }

    #[test]
    fn the_column_major_problem_is_the_transpose() {
        let f = Fake { len: 0 };
        let g = gemm(&f, &f, &f);
        let c = ColMajor::of(&g, g.ldx).unwrap();
        let want = ColMajor {
            m: 3,
            n: 5,
            k: 7,
            lda: 7,
            ldb: 7,
            ldc: 3,
        };
        assert_eq!(c, want);
        let g = Gemm { k: 0, ..g };
        assert_eq!(ColMajor::of(&g, 0).unwrap().lda, 1);
        let g = Gemm { ldy: 1 << 31, ..g };
        assert!(ColMajor::of(&g, 7).is_err());
    }

    #[test]
    fn gemm_operands_must_fit_their_buffers() {
        let (x, w, y) = (
            Fake { len: 4 * 35 },
            Fake { len: 4 * 21 },
            Fake { len: 4 * 15 },
        );
        let len = |f: &Fake| f.len;
        let g = gemm(&x, &w, &y);
        check_gemm(&g, len).unwrap();
        let bf16 = Gemm {
            w_type: WType::Bf16,
            w_off: 21,
            ..g
        };
        check_gemm(&bf16, len).unwrap();
        let bad = [
            Gemm { x_off: 1, ..g },
            Gemm { w_off: 1, ..g },
            Gemm { ldy: 4, ..g },
            Gemm { ldx: 6, ..g },
        ];
        for b in &bad {
            assert!(
                matches!(check_gemm(b, len), Err(GpuError::Shape { .. })),
                "{b:?}"
            );
        }
    }

    #[test]
    fn views_end_after_their_last_row() {
        assert_eq!(view_end(10, 5, 8, 7), 10 + 4 * 8 + 7);
        assert_eq!(view_end(0, 1, 100, 3), 3);
        assert!(check_operand("x", 39 * 4, 39, 4).is_ok());
        let e = check_operand("x", 38 * 4, 39, 4).unwrap_err();
        assert!(
            e.to_string()
                .contains("x needs 156 bytes, its buffer has 152"),
            "{e}"
        );
        assert!(check_range("write", 8, 6, 2).is_ok());
        assert!(check_range("write", 8, 6, 3).is_err());
        assert!(check_range("write", 8, usize::MAX, 2).is_err());
    }
}
