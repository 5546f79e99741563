//! The OpenCL [`Device`]: opencl3 over the ICD loader, with libOpenCL opened at run time, so
//! a host without it gets [`GpuError::Unavailable`], never a panic.
//!
//! [`OpenClDevice::open`] takes the first GPU over all platforms (with [`OpenClSelect::Any`],
//! the first device of any type when there is no GPU: a CPU device such as PoCL), creates a
//! context and one in-order command queue, and builds every [`SOURCES`] entry as OpenCL C 1.2
//! (`-cl-std=CL1.2`, no fast-math flags: results must round as on the CPU). Each entry point's
//! kernel object is kept by name.
//!
//! Invariants: every call goes to the one in-order queue; a kernel's arguments are set and it
//! is enqueued under that kernel's mutex (clSetKernelArg is not thread-safe per kernel);
//! offsets, lengths, argument counts and work-group sizes are checked on the host first
//! ([`GpuError::Shape`]) instead of letting the driver fail; a 0-byte buffer holds one byte on
//! the device; platform and device discovery up to the context's creation runs under one
//! process-wide lock (PoCL's lazy device initialisation is not thread-safe).

use std::collections::HashMap;
use std::ffi::c_void;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;
use std::sync::{Mutex, PoisonError};

use opencl3::command_queue::{
    CommandQueue, enqueue_copy_buffer, enqueue_fill_buffer, enqueue_nd_range_kernel,
    enqueue_read_buffer, enqueue_write_buffer,
};
use opencl3::context::Context;
use opencl3::device::{
    CL_DEVICE_TYPE_ACCELERATOR, CL_DEVICE_TYPE_ALL, CL_DEVICE_TYPE_CPU, CL_DEVICE_TYPE_GPU,
    Device as ClDev,
};
use opencl3::error_codes::{
    CL_BUILD_PROGRAM_FAILURE, CL_INVALID_BUFFER_SIZE, CL_MEM_OBJECT_ALLOCATION_FAILURE,
    CL_OUT_OF_RESOURCES, CL_PLATFORM_NOT_FOUND_KHR, ClError, DLOPEN_RUNTIME_LOAD_FAILED,
};
use opencl3::event::release_event;
use opencl3::kernel::Kernel;
use opencl3::memory::{Buffer, CL_MEM_COPY_HOST_PTR, CL_MEM_READ_WRITE, ClMem};
use opencl3::platform::{Platform, get_platforms};
use opencl3::program::Program;
use opencl3::types::{CL_BLOCKING, cl_device_type, cl_event, cl_int, cl_mem_flags};

use super::{Arg, Device, DeviceDesc, Dialect, Gemm, GpuError, KernelSource, Launch, SOURCES};
use super::{launch::gemm_portable, one_line_log, panic_text};

const API: &str = "opencl";
/// OpenCL C 1.2 and nothing else: no `-cl-fast-relaxed-math`, `-cl-mad-enable` and the like.
const BUILD_OPTIONS: &str = "-cl-std=CL1.2";
/// Longest build log kept in a [`GpuError::Build`].
const MAX_LOG: usize = 2000;
const NO_LIBRARY: &str = "libOpenCL not found (install an ICD loader and a driver, e.g. \
                          Debian's ocl-icd-libopencl1 and pocl-opencl-icd)";
const MIB: u64 = 1 << 20;

/// Serializes device discovery and context creation in this process: PoCL initialises its
/// devices lazily inside clGetDeviceIDs, and a second thread querying a device meanwhile reads
/// a half-initialised one (a crash in clGetDeviceInfo, seen with PoCL 2.10).
static DISCOVERY: Mutex<()> = Mutex::new(());

/// Which devices [`OpenClDevice::open`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpenClSelect {
    /// Only a GPU: a host with CPU devices only is [`GpuError::Unavailable`].
    GpuOnly,
    /// A GPU when there is one, else the first device of any type (a CPU device such as PoCL).
    Any,
}

/// A device buffer: an OpenCL buffer object and its length in bytes.
#[derive(Debug)]
pub struct ClBuffer {
    mem: Buffer<u8>,
    len: usize,
}

impl ClBuffer {
    /// Length in bytes (as asked for; a 0-byte buffer holds one byte on the device).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a 0-byte buffer.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A built kernel, its argument count and the most threads a work-group of it may have.
struct ClKernel {
    kernel: Mutex<Kernel>,
    num_args: usize,
    max_threads: usize,
}

/// The device's limits a launch is checked against.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_work_group: usize,
    max_item_sizes: [usize; 3],
    local_mem: u64,
    max_alloc: u64,
}

/// An OpenCL device with every kernel source built (see the module docs).
pub struct OpenClDevice {
    desc: DeviceDesc,
    limits: Limits,
    kernels: HashMap<&'static str, ClKernel>,
    // Field order is drop order: kernels, then the queue, then the context.
    queue: CommandQueue,
    context: Context,
}

impl fmt::Debug for OpenClDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenClDevice")
            .field("desc", &self.desc)
            .field("limits", &self.limits)
            .field("kernels", &self.kernels.len())
            .finish()
    }
}

fn cl_text(e: ClError) -> String {
    format!("{e} ({})", e.0)
}

fn call_err(call: &str, reason: impl Into<String>) -> GpuError {
    GpuError::Call {
        api: API,
        call: call.into(),
        reason: reason.into(),
    }
}

/// A `map_err` adaptor for an opencl3 call named `call`.
fn cl(call: &'static str) -> impl Fn(ClError) -> GpuError {
    move |e| call_err(call, cl_text(e))
}

fn unavailable(reason: impl Into<String>) -> GpuError {
    GpuError::Unavailable {
        api: API,
        reason: reason.into(),
    }
}

/// The result of an enqueue: its event released at once (the queue is in order), or the error.
fn done(call: &'static str, r: Result<cl_event, cl_int>) -> Result<(), GpuError> {
    let event = r.map_err(|code| call_err(call, cl_text(ClError(code))))?;
    if !event.is_null() {
        // SAFETY: the event was just returned by the enqueue and is released once. A failed
        // release leaks one event; nothing to report to the caller.
        let _ = unsafe { release_event(event) };
    }
    Ok(())
}

/// Every platform, or why there is none.
fn platforms() -> Result<Vec<Platform>, GpuError> {
    let none = "no OpenCL platform: the ICD loader found no driver (install one, e.g. \
                Debian's pocl-opencl-icd)";
    match get_platforms() {
        Ok(p) if !p.is_empty() => Ok(p),
        Ok(_) => Err(unavailable(none)),
        Err(e) if e.0 == DLOPEN_RUNTIME_LOAD_FAILED => Err(unavailable(NO_LIBRARY)),
        Err(e) if e.0 == CL_PLATFORM_NOT_FOUND_KHR => Err(unavailable(none)),
        Err(e) => Err(cl("clGetPlatformIDs")(e)),
    }
}

/// The device chosen and the name of its platform.
struct Found {
    device: ClDev,
    platform: String,
}

fn first_of(platforms: &[Platform], ty: cl_device_type) -> Option<Found> {
    platforms.iter().find_map(|p| {
        let id = *p.get_devices(ty).ok()?.first()?;
        Some(Found {
            device: ClDev::new(id),
            platform: p.name().unwrap_or_default(),
        })
    })
}

fn pick(platforms: &[Platform], select: OpenClSelect) -> Result<Found, GpuError> {
    if let Some(f) = first_of(platforms, CL_DEVICE_TYPE_GPU) {
        return Ok(f);
    }
    if select == OpenClSelect::Any
        && let Some(f) = first_of(platforms, CL_DEVICE_TYPE_ALL)
    {
        return Ok(f);
    }
    let wanted = match select {
        OpenClSelect::GpuOnly => "no OpenCL GPU device (CPU devices are not accepted here)",
        OpenClSelect::Any => "no OpenCL device",
    };
    let found: Vec<String> = platforms.iter().map(describe_platform).collect();
    Err(unavailable(format!("{wanted}; found {}", found.join("; "))))
}

fn type_name(t: cl_device_type) -> &'static str {
    if t & CL_DEVICE_TYPE_GPU != 0 {
        "GPU"
    } else if t & CL_DEVICE_TYPE_CPU != 0 {
        "CPU"
    } else if t & CL_DEVICE_TYPE_ACCELERATOR != 0 {
        "accelerator"
    } else {
        "other"
    }
}

fn describe_platform(p: &Platform) -> String {
    let name = p.name().unwrap_or_else(|_| "(unnamed)".into());
    let ids = p.get_devices(CL_DEVICE_TYPE_ALL).unwrap_or_default();
    let devices: Vec<String> = ids
        .into_iter()
        .map(|id| {
            let d = ClDev::new(id);
            let ty = type_name(d.dev_type().unwrap_or(0));
            format!("{} ({ty})", d.name().unwrap_or_default().trim())
        })
        .collect();
    if devices.is_empty() {
        format!("platform {} with no device", name.trim())
    } else {
        format!("platform {}: {}", name.trim(), devices.join(", "))
    }
}

fn describe(found: &Found) -> Result<DeviceDesc, GpuError> {
    let d = &found.device;
    let name = d.name().map_err(cl("clGetDeviceInfo(CL_DEVICE_NAME)"))?;
    let ty = d
        .dev_type()
        .map_err(cl("clGetDeviceInfo(CL_DEVICE_TYPE)"))?;
    Ok(DeviceDesc {
        api: API,
        name: format!("{} ({})", name.trim(), found.platform.trim()),
        memory_bytes: d
            .global_mem_size()
            .map_err(cl("clGetDeviceInfo(CL_DEVICE_GLOBAL_MEM_SIZE)"))?,
        is_cpu: ty & CL_DEVICE_TYPE_CPU != 0,
    })
}

impl Limits {
    fn query(d: &ClDev) -> Result<Limits, GpuError> {
        let sizes = d
            .max_work_item_sizes()
            .map_err(cl("clGetDeviceInfo(CL_DEVICE_MAX_WORK_ITEM_SIZES)"))?;
        let item = |i: usize| sizes.get(i).copied().unwrap_or(1);
        Ok(Limits {
            max_work_group: d
                .max_work_group_size()
                .map_err(cl("clGetDeviceInfo(CL_DEVICE_MAX_WORK_GROUP_SIZE)"))?,
            max_item_sizes: [item(0), item(1), item(2)],
            local_mem: d
                .local_mem_size()
                .map_err(cl("clGetDeviceInfo(CL_DEVICE_LOCAL_MEM_SIZE)"))?,
            max_alloc: d
                .max_mem_alloc_size()
                .map_err(cl("clGetDeviceInfo(CL_DEVICE_MAX_MEM_ALLOC_SIZE)"))?,
        })
    }
}

/// Builds `src` for `device`; a compile failure is a [`GpuError::Build`] with the log.
fn build_program(
    context: &Context,
    device: &ClDev,
    device_name: &str,
    src: &KernelSource,
) -> Result<Program, GpuError> {
    let text = src.source_for(Dialect::OpenCl);
    let mut program =
        Program::create_from_source(context, &text).map_err(cl("clCreateProgramWithSource"))?;
    match program.build(&[device.id()], BUILD_OPTIONS) {
        Ok(()) => Ok(program),
        Err(e) if e.0 == CL_BUILD_PROGRAM_FAILURE => {
            let log = program
                .get_build_log(device.id())
                .unwrap_or_else(|e| format!("CL_BUILD_PROGRAM_FAILURE (no build log: {e})"));
            Err(build_error(src.name, device_name, &log))
        }
        Err(e) => Err(cl("clBuildProgram")(e)),
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

/// The kernel object of entry point `name` in `program`, with its limits.
fn load_kernel(
    program: &Program,
    device: &ClDev,
    limits: &Limits,
    name: &str,
) -> Result<ClKernel, ClError> {
    let kernel = Kernel::create(program, name)?;
    let num_args = kernel.num_args()? as usize;
    let max_threads = kernel.get_work_group_size(device.id())?;
    Ok(ClKernel {
        kernel: Mutex::new(kernel),
        num_args,
        max_threads: max_threads.min(limits.max_work_group),
    })
}

/// Builds every source and collects its entry points by name.
fn load_kernels(
    context: &Context,
    device: &ClDev,
    desc: &DeviceDesc,
    limits: &Limits,
    sources: &[KernelSource],
) -> Result<HashMap<&'static str, ClKernel>, GpuError> {
    let mut kernels = HashMap::new();
    for src in sources {
        let program = build_program(context, device, &desc.name, src)?;
        for &entry in src.entry_points {
            let k = load_kernel(&program, device, limits, entry).map_err(|e| {
                let log = format!("entry point {entry}: {}", cl_text(e));
                build_error(src.name, &desc.name, &log)
            })?;
            kernels.insert(entry, k);
        }
    }
    Ok(kernels)
}

fn check_range(what: &str, buf: &ClBuffer, offset: usize, len: usize) -> Result<(), GpuError> {
    match offset.checked_add(len) {
        Some(end) if end <= buf.len => Ok(()),
        _ => Err(GpuError::shape(
            what,
            format!(
                "bytes {offset}..{offset}+{len} are outside a buffer of {} bytes",
                buf.len
            ),
        )),
    }
}

impl OpenClDevice {
    /// The first device `select` accepts (see the module docs), with every [`SOURCES`] entry
    /// built.
    pub fn open(select: OpenClSelect) -> Result<OpenClDevice, GpuError> {
        OpenClDevice::open_with(select, SOURCES)
    }

    /// As [`OpenClDevice::open`], building `sources` instead of [`SOURCES`].
    pub fn open_with(
        select: OpenClSelect,
        sources: &[KernelSource],
    ) -> Result<OpenClDevice, GpuError> {
        catch_unwind(AssertUnwindSafe(|| {
            OpenClDevice::open_inner(select, sources)
        }))
        .unwrap_or_else(|p| Err(call_err("opening the device", panic_text(&*p))))
    }

    fn open_inner(select: OpenClSelect, sources: &[KernelSource]) -> Result<Self, GpuError> {
        let (found, desc, limits, context, queue) = {
            // Nothing the lock guards can be left half-done by a panic.
            let _guard = DISCOVERY.lock().unwrap_or_else(PoisonError::into_inner);
            let found = pick(&platforms()?, select)?;
            let desc = describe(&found)?;
            let limits = Limits::query(&found.device)?;
            let context = Context::from_device(&found.device).map_err(cl("clCreateContext"))?;
            let queue =
                CommandQueue::create_default(&context, 0).map_err(cl("clCreateCommandQueue"))?;
            (found, desc, limits, context, queue)
        };
        let kernels = load_kernels(&context, &found.device, &desc, &limits, sources)?;
        Ok(OpenClDevice {
            desc,
            limits,
            kernels,
            queue,
            context,
        })
    }

    fn alloc_error(&self, bytes: usize, e: ClError) -> GpuError {
        let oom = |available: u64| GpuError::OutOfMemory {
            api: API,
            device: self.desc.name.clone(),
            what: format!("a buffer of {bytes} bytes ({})", cl_text(ClError(e.0))),
            needed_mib: (bytes as u64).div_ceil(MIB),
            available_mib: available / MIB,
        };
        match e.0 {
            CL_INVALID_BUFFER_SIZE => oom(self.limits.max_alloc),
            CL_MEM_OBJECT_ALLOCATION_FAILURE | CL_OUT_OF_RESOURCES => oom(self.desc.memory_bytes),
            _ => cl("clCreateBuffer")(e),
        }
    }

    /// A buffer of `bytes` (at least 1) bytes, `host` copied in when not null.
    fn create(
        &self,
        bytes: usize,
        flags: cl_mem_flags,
        host: *mut c_void,
    ) -> Result<ClBuffer, GpuError> {
        let flags = CL_MEM_READ_WRITE | flags;
        // SAFETY: `host` is null or points to `bytes` readable bytes (CL_MEM_COPY_HOST_PTR
        // copies them before returning and never writes them).
        let mem = unsafe { Buffer::<u8>::create(&self.context, flags, bytes.max(1), host) }
            .map_err(|e| self.alloc_error(bytes, e))?;
        Ok(ClBuffer { mem, len: bytes })
    }

    fn kernel(&self, name: &str) -> Result<&ClKernel, GpuError> {
        self.kernels.get(name).ok_or_else(|| {
            GpuError::shape(
                name,
                "no such kernel on this OpenCL device (not an entry point of a built source)",
            )
        })
    }

    /// Global and local work sizes of `l`, checked against the kernel's and device's limits.
    fn work_sizes(
        &self,
        name: &str,
        k: &ClKernel,
        l: Launch,
    ) -> Result<([usize; 3], [usize; 3]), GpuError> {
        let threads: u64 = l.block.iter().map(|&b| u64::from(b)).product();
        if threads == 0 || l.grid.contains(&0) {
            let reason = format!("empty launch: grid {:?}, block {:?}", l.grid, l.block);
            return Err(GpuError::shape(name, reason));
        }
        if threads > k.max_threads as u64 {
            let reason = format!(
                "{threads} threads per block exceed this device's limit of {} \
                 (CL_DEVICE_MAX_WORK_GROUP_SIZE / CL_KERNEL_WORK_GROUP_SIZE)",
                k.max_threads
            );
            return Err(GpuError::shape(name, reason));
        }
        let (mut global, mut local) = ([0usize; 3], [0usize; 3]);
        for d in 0..3 {
            local[d] = l.block[d] as usize;
            global[d] = l.grid[d] as usize * local[d];
            if local[d] > self.limits.max_item_sizes[d] {
                let reason = format!(
                    "block {:?} exceeds CL_DEVICE_MAX_WORK_ITEM_SIZES {:?}",
                    l.block, self.limits.max_item_sizes
                );
                return Err(GpuError::shape(name, reason));
            }
        }
        Ok((global, local))
    }

    fn check_args(
        &self,
        name: &str,
        k: &ClKernel,
        args: &[Arg<'_, ClBuffer>],
    ) -> Result<(), GpuError> {
        if args.len() != k.num_args {
            let reason = format!(
                "{} arguments given, the kernel takes {}",
                args.len(),
                k.num_args
            );
            return Err(GpuError::shape(name, reason));
        }
        let local: u64 = args
            .iter()
            .map(|a| match a {
                Arg::Local(b) => *b as u64,
                _ => 0,
            })
            .sum();
        if local > self.limits.local_mem {
            let reason = format!(
                "{local} bytes of local memory exceed CL_DEVICE_LOCAL_MEM_SIZE ({})",
                self.limits.local_mem
            );
            return Err(GpuError::shape(name, reason));
        }
        Ok(())
    }
}

/// Sets argument `i` of `k`.
///
/// # Safety
/// `k` must not be used by another thread meanwhile (the caller holds its mutex).
unsafe fn set_arg(k: &Kernel, i: u32, a: &Arg<'_, ClBuffer>) -> opencl3::Result<()> {
    // SAFETY: each value has the size of the OpenCL type the kernel declares (checked by
    // clSetKernelArg: CL_INVALID_ARG_SIZE otherwise); a cl_mem is passed by handle.
    unsafe {
        match *a {
            Arg::Buf(b) => k.set_arg(i, &b.mem.get()),
            Arg::I32(v) => k.set_arg(i, &v),
            Arg::I64(v) => k.set_arg(i, &v),
            Arg::F32(v) => k.set_arg(i, &v),
            Arg::F64(v) => k.set_arg(i, &v),
            // A 0-byte local argument is invalid in OpenCL; one byte stands for it.
            Arg::Local(bytes) => k.set_arg_local_buffer(i, bytes.max(1)),
        }
    }
}

impl Device for OpenClDevice {
    type Buffer = ClBuffer;

    fn desc(&self) -> &DeviceDesc {
        &self.desc
    }

    fn alloc_zeroed(&self, bytes: usize) -> Result<ClBuffer, GpuError> {
        let buf = self.create(bytes, 0, ptr::null_mut())?;
        let zero = 0u8;
        // SAFETY: the pattern is one byte, copied by the call; the range is the whole buffer.
        let r = unsafe {
            enqueue_fill_buffer(
                self.queue.get(),
                buf.mem.get(),
                (&raw const zero).cast(),
                1,
                0,
                bytes.max(1),
                0,
                ptr::null(),
            )
        };
        done("clEnqueueFillBuffer", r)?;
        Ok(buf)
    }

    fn upload(&self, data: &[u8]) -> Result<ClBuffer, GpuError> {
        if data.is_empty() {
            return self.alloc_zeroed(0);
        }
        self.create(
            data.len(),
            CL_MEM_COPY_HOST_PTR,
            data.as_ptr() as *mut c_void,
        )
    }

    fn write(&self, buf: &ClBuffer, offset: usize, data: &[u8]) -> Result<(), GpuError> {
        check_range("write", buf, offset, data.len())?;
        if data.is_empty() {
            return Ok(());
        }
        // SAFETY: blocking write of `data` (alive for the call) into a checked range.
        let r = unsafe {
            enqueue_write_buffer(
                self.queue.get(),
                buf.mem.get(),
                CL_BLOCKING,
                offset,
                data.len(),
                data.as_ptr().cast(),
                0,
                ptr::null(),
            )
        };
        done("clEnqueueWriteBuffer", r)
    }

    fn download(&self, buf: &ClBuffer, offset: usize, out: &mut [u8]) -> Result<(), GpuError> {
        check_range("download", buf, offset, out.len())?;
        if out.is_empty() {
            return self.synchronize();
        }
        // SAFETY: blocking read into `out` (alive and exclusive for the call), checked range.
        let r = unsafe {
            enqueue_read_buffer(
                self.queue.get(),
                buf.mem.get(),
                CL_BLOCKING,
                offset,
                out.len(),
                out.as_mut_ptr().cast(),
                0,
                ptr::null(),
            )
        };
        done("clEnqueueReadBuffer", r)
    }

    fn copy(
        &self,
        src: &ClBuffer,
        src_off: usize,
        dst: &ClBuffer,
        dst_off: usize,
        bytes: usize,
    ) -> Result<(), GpuError> {
        check_range("copy source", src, src_off, bytes)?;
        check_range("copy destination", dst, dst_off, bytes)?;
        if bytes == 0 {
            return Ok(());
        }
        if src.mem.get() == dst.mem.get() && src_off.abs_diff(dst_off) < bytes {
            let reason = format!("{bytes} bytes from {src_off} to {dst_off} overlap");
            return Err(GpuError::shape("copy", reason));
        }
        // SAFETY: both ranges checked, not overlapping.
        let r = unsafe {
            enqueue_copy_buffer(
                self.queue.get(),
                src.mem.get(),
                dst.mem.get(),
                src_off,
                dst_off,
                bytes,
                0,
                ptr::null(),
            )
        };
        done("clEnqueueCopyBuffer", r)
    }

    fn launch(
        &self,
        name: &'static str,
        geometry: Launch,
        args: &[Arg<'_, ClBuffer>],
    ) -> Result<(), GpuError> {
        let k = self.kernel(name)?;
        let (global, local) = self.work_sizes(name, k, geometry)?;
        self.check_args(name, k, args)?;
        // A panic while holding the lock cannot leave stale state: every launch sets all args.
        let kernel = k.kernel.lock().unwrap_or_else(PoisonError::into_inner);
        for (i, a) in args.iter().enumerate() {
            // SAFETY: the kernel's mutex is held.
            unsafe { set_arg(&kernel, i as u32, a) }
                .map_err(|e| call_err(&format!("clSetKernelArg({name}, {i})"), cl_text(e)))?;
        }
        // SAFETY: all arguments set; the size arrays have the 3 entries work_dim says.
        let r = unsafe {
            enqueue_nd_range_kernel(
                self.queue.get(),
                kernel.get(),
                3,
                ptr::null(),
                global.as_ptr(),
                local.as_ptr(),
                0,
                ptr::null(),
            )
        };
        done("clEnqueueNDRangeKernel", r)
    }

    fn gemm(&self, g: &Gemm<'_, ClBuffer>) -> Result<(), GpuError> {
        gemm_portable(self, g)
    }

    fn synchronize(&self) -> Result<(), GpuError> {
        self.queue.finish().map_err(cl("clFinish"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::{WType, bf16_bytes, download_f32, f32_bytes};

    const TEST_SOURCE: KernelSource = KernelSource {
        name: "device_test",
        body: r#"
KERNEL void axpy(GLOBAL_MEM float* y, GLOBAL_MEM const float* x, float a, int n) {
    const i64 i = GID_0 * LDIM_0 + LID_0;
    if (i < n) y[i] += a * x[i];
}

KERNEL void affine_f64(GLOBAL_MEM double* y, i64 off, double a, double b, int n) {
    const i64 i = GID_0 * LDIM_0 + LID_0;
    if (i < n) y[off + i] = a * y[off + i] + b;
}

KERNEL void block_sums(GLOBAL_MEM const float* x, GLOBAL_MEM float* out, int n
                       LOCAL_ARG(float, smem)) {
    LOCAL_DECL(float, smem);
    const i64 i = GID_0 * LDIM_0 + LID_0;
    const float s = block_sum(i < n ? x[i] : 0.0f, smem);
    if (LID_0 == 0) out[GID_0] = s;
}
"#,
        entry_points: &["axpy", "affine_f64", "block_sums"],
    };

    const BROKEN_SOURCE: KernelSource = KernelSource {
        name: "broken",
        body: "KERNEL void broken(GLOBAL_MEM float* y) { y[0] = undefined_name_xyz; }\n",
        entry_points: &["broken"],
    };

    /// The device, or `None` (printing why) when the host has none and none is required.
    fn device(test: &str, sources: &[KernelSource]) -> Option<OpenClDevice> {
        match OpenClDevice::open_with(OpenClSelect::Any, sources) {
            Ok(d) => Some(d),
            Err(e @ GpuError::Unavailable { .. }) => {
                if std::env::var_os("SWITCHHEAD_REQUIRE_OPENCL").is_some() {
                    panic!("{test}: SWITCHHEAD_REQUIRE_OPENCL is set, but {e}");
                }
                println!("SKIPPED {test}: {e}");
                None
            }
            Err(e) => panic!("{test}: {e}"),
        }
    }

    fn f64_bytes(v: &[f64]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn download_f64(dev: &OpenClDevice, buf: &ClBuffer, n: usize) -> Vec<f64> {
        let mut bytes = vec![0u8; n * 8];
        dev.download(buf, 0, &mut bytes).unwrap();
        bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn describes_the_device() {
        let Some(dev) = device("describes_the_device", &[]) else {
            return;
        };
        let d = dev.desc();
        assert_eq!(d.api, "opencl");
        assert!(d.name.contains('(') && d.name.ends_with(')'), "{}", d.name);
        assert!(d.memory_bytes > 0);
        println!("{d:?}");
    }

    #[test]
    fn gpu_only_never_returns_a_cpu_device() {
        if device("gpu_only_never_returns_a_cpu_device", &[]).is_none() {
            return;
        }
        match OpenClDevice::open_with(OpenClSelect::GpuOnly, &[]) {
            Ok(d) => assert!(!d.desc().is_cpu, "{:?}", d.desc()),
            Err(GpuError::Unavailable { reason, .. }) => println!("GpuOnly: {reason}"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn upload_download_write_and_copy_round_trip() {
        let Some(dev) = device("upload_download_write_and_copy_round_trip", &[]) else {
            return;
        };
        let a = dev.upload(&[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        assert_eq!(a.len(), 8);
        dev.write(&a, 2, &[20, 30]).unwrap();
        let mut out = [0u8; 5];
        dev.download(&a, 1, &mut out).unwrap();
        assert_eq!(out, [2, 20, 30, 5, 6]);

        let b = dev.alloc_zeroed(6).unwrap();
        dev.copy(&a, 3, &b, 1, 4).unwrap();
        dev.copy(&a, 0, &b, 0, 0).unwrap();
        let mut all = [9u8; 6];
        dev.download(&b, 0, &mut all).unwrap();
        assert_eq!(all, [0, 30, 5, 6, 7, 0]);

        // Non-overlapping copy within one buffer.
        dev.copy(&a, 0, &a, 4, 4).unwrap();
        let mut whole = [0u8; 8];
        dev.download(&a, 0, &mut whole).unwrap();
        assert_eq!(whole, [1, 2, 20, 30, 1, 2, 20, 30]);
        dev.synchronize().unwrap();
    }

    #[test]
    fn out_of_range_transfers_are_shape_errors() {
        let Some(dev) = device("out_of_range_transfers_are_shape_errors", &[]) else {
            return;
        };
        let a = dev.alloc_zeroed(8).unwrap();
        let shape = |r: Result<(), GpuError>| matches!(r, Err(GpuError::Shape { .. }));
        assert!(shape(dev.write(&a, 6, &[0; 3])));
        assert!(shape(dev.download(&a, usize::MAX, &mut [0; 2])));
        assert!(shape(dev.copy(&a, 0, &a, 2, 4)), "overlapping copy");
        assert!(shape(dev.copy(&a, 5, &a, 0, 4)));
        let empty = dev.alloc_zeroed(0).unwrap();
        assert!(empty.is_empty());
        dev.download(&empty, 0, &mut []).unwrap();
        assert!(shape(dev.write(&empty, 0, &[1])));
        let e = dev.upload(&[]).unwrap();
        assert_eq!(e.len(), 0);
    }

    #[test]
    fn runs_a_custom_kernel_with_scalar_arguments() {
        let test = "runs_a_custom_kernel_with_scalar_arguments";
        let Some(dev) = device(test, &[TEST_SOURCE]) else {
            return;
        };
        let n = 1000;
        let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let y0: Vec<f32> = (0..n).map(|i| 1.0 - i as f32 * 0.5).collect();
        let (xb, yb) = (
            dev.upload(&f32_bytes(&x)).unwrap(),
            dev.upload(&f32_bytes(&y0)).unwrap(),
        );
        let args = [
            Arg::Buf(&yb),
            Arg::Buf(&xb),
            Arg::F32(2.0),
            Arg::I32(n as i32),
        ];
        dev.launch("axpy", Launch::linear(4, 256), &args).unwrap();
        let y = download_f32(&dev, &yb, 0, n).unwrap();
        for i in 0..n {
            assert_eq!(y[i], y0[i] + 2.0 * x[i], "y[{i}]");
        }

        let zb = dev.upload(&f64_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0])).unwrap();
        let args = [
            Arg::Buf(&zb),
            Arg::I64(2),
            Arg::F64(0.5),
            Arg::F64(-1.0),
            Arg::I32(3),
        ];
        dev.launch("affine_f64", Launch::linear(1, 4), &args)
            .unwrap();
        assert_eq!(download_f64(&dev, &zb, 5), [1.0, 2.0, 0.5, 1.0, 1.5]);
    }

    #[test]
    fn local_memory_arguments_reach_the_kernel() {
        let Some(dev) = device("local_memory_arguments_reach_the_kernel", &[TEST_SOURCE]) else {
            return;
        };
        let (n, block, blocks) = (300usize, 128u32, 3u32);
        let x: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
        let xb = dev.upload(&f32_bytes(&x)).unwrap();
        let out = dev.alloc_zeroed(blocks as usize * 4).unwrap();
        let args = [
            Arg::Buf(&xb),
            Arg::Buf(&out),
            Arg::I32(n as i32),
            Arg::Local(block as usize * 4),
        ];
        dev.launch("block_sums", Launch::linear(blocks, block), &args)
            .unwrap();
        let got = download_f32(&dev, &out, 0, blocks as usize).unwrap();
        let want: Vec<f32> = x.chunks(block as usize).map(|c| c.iter().sum()).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn bad_launches_are_errors() {
        let Some(dev) = device("bad_launches_are_errors", &[TEST_SOURCE]) else {
            return;
        };
        let yb = dev.alloc_zeroed(16).unwrap();
        let e = dev.launch("nope", Launch::linear(1, 1), &[]).unwrap_err();
        assert!(
            matches!(e, GpuError::Shape { .. }) && e.to_string().contains("nope"),
            "{e}"
        );
        let few = [Arg::Buf(&yb), Arg::Buf(&yb)];
        let e = dev.launch("axpy", Launch::linear(1, 4), &few).unwrap_err();
        assert!(
            e.to_string()
                .contains("2 arguments given, the kernel takes 4"),
            "{e}"
        );
        let args = [Arg::Buf(&yb), Arg::Buf(&yb), Arg::F32(1.0), Arg::I32(4)];
        let huge = Launch::linear(1, 1 << 20);
        let e = dev.launch("axpy", huge, &args).unwrap_err();
        assert!(e.to_string().contains("threads per block exceed"), "{e}");
        let e = dev.launch("axpy", Launch::linear(0, 4), &args).unwrap_err();
        assert!(e.to_string().contains("empty launch"), "{e}");
        // A scalar of the wrong width is the driver's CL_INVALID_ARG_SIZE, reported as a call.
        let wide = [Arg::Buf(&yb), Arg::Buf(&yb), Arg::F64(1.0), Arg::I32(4)];
        let e = dev.launch("axpy", Launch::linear(1, 4), &wide).unwrap_err();
        assert!(
            matches!(e, GpuError::Call { .. }) && e.to_string().contains("axpy, 2"),
            "{e}"
        );
    }

    #[test]
    fn a_broken_source_is_a_one_line_build_error() {
        let test = "a_broken_source_is_a_one_line_build_error";
        if device(test, &[]).is_none() {
            return;
        }
        let e =
            OpenClDevice::open_with(OpenClSelect::Any, &[TEST_SOURCE, BROKEN_SOURCE]).unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(&e, GpuError::Build { module, .. } if module == "broken"),
            "{text}"
        );
        assert!(!text.contains('\n'), "{text}");
        assert!(text.contains("undefined_name_xyz"), "{text}");
        println!("{text}");
    }

    #[test]
    fn every_source_builds_and_gemm_matches_the_cpu() {
        let Some(dev) = device("every_source_builds_and_gemm_matches_the_cpu", SOURCES) else {
            return;
        };
        for s in SOURCES {
            for e in s.entry_points {
                assert!(dev.kernels.contains_key(e), "{e}");
            }
        }
        for wtype in [WType::F32, WType::Bf16] {
            check_gemm(&dev, wtype);
        }
    }

    /// `y = 0.5 * x @ w^T + y` on a 70 x 65 output (partial tiles), x rows with padding.
    fn check_gemm(dev: &OpenClDevice, wtype: WType) {
        let (m, n, k, ldx, ldy) = (70usize, 65usize, 33usize, 40usize, 67usize);
        let x: Vec<f32> = (0..m * ldx)
            .map(|i| ((i * 7) % 13) as f32 * 0.25 - 1.0)
            .collect();
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 5) % 11) as f32 * 0.5 - 2.0)
            .collect();
        let y0: Vec<f32> = (0..m * ldy).map(|i| (i % 3) as f32).collect();
        let wb = match wtype {
            WType::F32 => f32_bytes(&w),
            WType::Bf16 => bf16_bytes(&w),
        };
        let (xb, wbuf, yb) = (
            dev.upload(&f32_bytes(&x)).unwrap(),
            dev.upload(&wb).unwrap(),
            dev.upload(&f32_bytes(&y0)).unwrap(),
        );
        let g = Gemm {
            m,
            n,
            k,
            x: &xb,
            x_off: 0,
            ldx,
            w: &wbuf,
            w_off: 0,
            w_type: wtype,
            y: &yb,
            y_off: 0,
            ldy,
            alpha: 0.5,
            beta: 1.0,
        };
        dev.gemm(&g).unwrap();
        let y = download_f32(dev, &yb, 0, m * ldy).unwrap();
        for r in 0..m {
            for c in 0..n {
                let dot: f32 = (0..k).map(|i| x[r * ldx + i] * w[c * k + i]).sum();
                let want = 0.5 * dot + y0[r * ldy + c];
                let got = y[r * ldy + c];
                assert!(
                    (got - want).abs() <= 1e-3 * want.abs().max(1.0),
                    "{wtype:?} y[{r},{c}]: {got} vs {want}"
                );
            }
        }
    }
}
