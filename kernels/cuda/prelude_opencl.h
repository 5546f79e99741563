// OpenCL C 1.2 dialect of the switchhead kernel sources: the names prelude_cuda.h defines,
// for any OpenCL device (PoCL on a CPU, AMD, Intel). No sub-groups are assumed, so the block
// reductions are a local-memory tree. Doubles (cl_khr_fp64) are required: the routers'
// sigmoid and the rotary angles are computed in f64, as on the CPU.
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#pragma OPENCL EXTENSION cl_khr_global_int32_base_atomics : enable
#define SH_OPENCL 1

#define KERNEL __kernel
#define DEVICE_FN inline
#define GLOBAL_MEM __global
#define LOCAL_MEM __local
#define LOCAL_PTR __local
#define LOCAL_ARG(T, name) , __local T* name
#define LOCAL_DECL(T, name)

#define LID_0 ((int)get_local_id(0))
#define GID_0 ((i64)get_group_id(0))
#define GID_1 ((i64)get_group_id(1))
#define LDIM_0 ((int)get_local_size(0))
#define GDIM_0 ((i64)get_num_groups(0))
#define local_barrier() barrier(CLK_LOCAL_MEM_FENCE)

typedef long i64;
typedef unsigned int u32;
typedef unsigned short bf16;

DEVICE_FN float sh_as_float(u32 u) { return as_float(u); }
DEVICE_FN u32 sh_as_uint(float f) { return as_uint(f); }
DEVICE_FN float sh_fmax(float a, float b) { return fmax(a, b); }
DEVICE_FN float sh_exp(float x) { return exp(x); }
DEVICE_FN float sh_rsqrt(float x) { return rsqrt(x); }
DEVICE_FN float sh_fma(float a, float b, float c) { return fma(a, b, c); }
DEVICE_FN double sh_exp_f64(double x) { return exp(x); }
DEVICE_FN double sh_pow_f64(double b, double e) { return pow(b, e); }
DEVICE_FN void sh_sincos_f64(double x, double* s, double* c) { *s = sincos(x, c); }
DEVICE_FN int sh_min(int a, int b) { return min(a, b); }

DEVICE_FN int sh_atomic_add_i32(GLOBAL_MEM int* p, int v) {
    return atomic_add((volatile GLOBAL_MEM int*)p, v);
}

// No float atomics in OpenCL 1.2: a compare-and-swap loop on the bits.
DEVICE_FN void sh_atomic_add_f32(GLOBAL_MEM float* p, float v) {
    volatile GLOBAL_MEM u32* bits = (volatile GLOBAL_MEM u32*)p;
    u32 old = *bits, seen;
    while ((seen = atomic_cmpxchg(bits, old, as_uint(as_float(old) + v))) != old) old = seen;
}

// Block reductions (LDIM_0 a power of two, at most SH_REDUCE_SCRATCH): a tree in local
// memory. Every thread gets the result.
#define SH_REDUCE_SCRATCH 256

#define SH_BLOCK_REDUCE(NAME, OP, IDENTITY)                                                    \
    float NAME(float v, __local float* scratch) {                                              \
        const int t = (int)get_local_id(0), n = (int)get_local_size(0);                        \
        barrier(CLK_LOCAL_MEM_FENCE);                                                          \
        scratch[t] = v;                                                                        \
        barrier(CLK_LOCAL_MEM_FENCE);                                                          \
        for (int s = n / 2; s > 0; s >>= 1) {                                                  \
            if (t < s) scratch[t] = OP(scratch[t], scratch[t + s]);                            \
            barrier(CLK_LOCAL_MEM_FENCE);                                                      \
        }                                                                                      \
        const float r = scratch[0];                                                            \
        barrier(CLK_LOCAL_MEM_FENCE);                                                          \
        return r;                                                                              \
    }
#define SH_ADD(a, b) ((a) + (b))
SH_BLOCK_REDUCE(block_sum, SH_ADD, 0.0f)
SH_BLOCK_REDUCE(block_max, fmax, -INFINITY)
