// switchhead CUDA kernels: shared prelude, prepended to every kernel source by
// switchhead_kernels::cuda::sources (NVRTC compiles each source on its own, no #include, no
// CUDA headers, so the kernels build with nothing but libnvrtc).
//
// Conventions (mirroring kernels/src/*.rs and SPEC.md):
// - Activations are f32, row-major; a "row" is one token (row = b*T + t).
// - Weights are W = float or bf16 (raw bits in an unsigned short); every product accumulates
//   in f32. Entry points carry a _f32 / _bf16 suffix for their weight type.
// - Sizes are int (the launchers check that they fit); element offsets are size_t.

typedef unsigned short bf16;
typedef unsigned int u32;

// No math.h under NVRTC without headers.
#define SH_NEG_INF __int_as_float(0xff800000)

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(bf16 x) { return __uint_as_float(((u32)x) << 16); }

// Round to nearest even, NaN kept quiet (as torch's float -> bfloat16).
__device__ __forceinline__ bf16 f32_to_bf16(float f) {
    u32 u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16)(u >> 16);
}

// Sigmoid in f64, rounded once: the CPU kernels' gates (switchhead_ops::sigmoid) bit for bit
// up to exp's last ulp, so expert selections agree wherever the f32 logits do.
__device__ __forceinline__ float sigmoid_exact(float x) { return (float)(1.0 / (1.0 + exp(-(double)x))); }

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `scratch` holds 33 floats of shared memory.
__device__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float w = lane < warps ? scratch[lane] : 0.0f;
        w = warp_sum(w);
        if (lane == 0) scratch[32] = w;
    }
    __syncthreads();
    return scratch[32];
}

// Max over the block, as block_sum.
__device__ float block_max(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float w = lane < warps ? scratch[lane] : SH_NEG_INF;
        w = warp_max(w);
        if (lane == 0) scratch[32] = w;
    }
    __syncthreads();
    return scratch[32];
}

#define SH_INSTANTIATE_W(MACRO) MACRO(f32, float) MACRO(bf16, bf16)
