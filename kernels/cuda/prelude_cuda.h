// CUDA dialect of the switchhead kernel sources (NVRTC, no headers). Every kernel is written
// once in the portable vocabulary below; prelude_opencl.h maps the same names to OpenCL C 1.2.
// The naming follows PyCUDA/PyOpenCL's CLUDA preamble (KERNEL, GLOBAL_MEM, LOCAL_MEM, LID_0,
// GID_0, LDIM_0, GDIM_0, local_barrier), plus a dynamic local-memory argument
// (LOCAL_ARG/LOCAL_DECL) and the atomics and reductions the kernels need.
#define SH_CUDA 1

#define KERNEL extern "C" __global__
#define DEVICE_FN __device__ __forceinline__
#define GLOBAL_MEM
#define LOCAL_MEM __shared__
// A pointer into local memory (CUDA pointers are generic; OpenCL needs the address space).
#define LOCAL_PTR
// Dynamic local memory: OpenCL takes it as a trailing kernel argument, CUDA as the launch's
// shared-memory size. A kernel ends its parameter list with LOCAL_ARG(float, smem) (no comma
// before it) and opens its body with LOCAL_DECL(float, smem).
#define LOCAL_ARG(T, name)
#define LOCAL_DECL(T, name) extern __shared__ T name[]

#define LID_0 ((int)threadIdx.x)
#define GID_0 ((long long)blockIdx.x)
#define GID_1 ((long long)blockIdx.y)
#define LDIM_0 ((int)blockDim.x)
#define GDIM_0 ((long long)gridDim.x)
#define local_barrier() __syncthreads()

typedef long long i64;
typedef unsigned int u32;
typedef unsigned short bf16;

DEVICE_FN float sh_as_float(u32 u) { return __uint_as_float(u); }
DEVICE_FN u32 sh_as_uint(float f) { return __float_as_uint(f); }
DEVICE_FN float sh_fmax(float a, float b) { return fmaxf(a, b); }
DEVICE_FN float sh_exp(float x) { return expf(x); }
DEVICE_FN float sh_rsqrt(float x) { return rsqrtf(x); }
DEVICE_FN float sh_fma(float a, float b, float c) { return fmaf(a, b, c); }
DEVICE_FN double sh_exp_f64(double x) { return exp(x); }
DEVICE_FN double sh_pow_f64(double b, double e) { return pow(b, e); }
DEVICE_FN void sh_sincos_f64(double x, double* s, double* c) { sincos(x, s, c); }
DEVICE_FN int sh_min(int a, int b) { return min(a, b); }

DEVICE_FN int sh_atomic_add_i32(GLOBAL_MEM int* p, int v) { return atomicAdd(p, v); }
DEVICE_FN void sh_atomic_add_f32(GLOBAL_MEM float* p, float v) { atomicAdd(p, v); }

// Block reductions (LDIM_0 a power of two, 32..1024): warp shuffles, then one warp over the
// warps' partials. `scratch` holds SH_REDUCE_SCRATCH floats of local memory; every thread
// gets the result.
#define SH_REDUCE_SCRATCH 33

DEVICE_FN float sh_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

DEVICE_FN float sh_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

#define SH_BLOCK_REDUCE(NAME, WARP_OP, IDENTITY)                                               \
    __device__ float NAME(float v, float* scratch) {                                           \
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;   \
        v = WARP_OP(v);                                                                        \
        __syncthreads();                                                                       \
        if (lane == 0) scratch[warp] = v;                                                      \
        __syncthreads();                                                                       \
        if (warp == 0) {                                                                       \
            float w = lane < warps ? scratch[lane] : (IDENTITY);                               \
            w = WARP_OP(w);                                                                    \
            if (lane == 0) scratch[32] = w;                                                    \
        }                                                                                      \
        __syncthreads();                                                                       \
        return scratch[32];                                                                    \
    }
SH_BLOCK_REDUCE(block_sum, sh_warp_sum, 0.0f)
SH_BLOCK_REDUCE(block_max, sh_warp_max, __int_as_float(0xff800000))
