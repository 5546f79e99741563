// LayerNorm over the last dim (eps from the model, 1e-5 in every paper run), affine with bias:
// y = (x - mean) / sqrt(var + eps) * gamma + beta, biased variance, f32 throughout.
// Two passes over the row (mean, then centred variance) as torch does; the row is read from
// global memory each pass (L1/L2 resident for D <= 4096).
// Grid: (rows), block: 256 threads (a multiple of 32).

template <typename W>
__device__ void layer_norm(const float* x, const W* gamma, const W* beta, float* y, int rows,
                           int d, float eps) {
    __shared__ float scratch[33];
    const int r = blockIdx.x;
    if (r >= rows) return;
    const float* xr = x + (size_t)r * d;
    float s = 0.0f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) s += xr[i];
    const float mean = block_sum(s, scratch) / (float)d;
    float v = 0.0f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        const float c = xr[i] - mean;
        v += c * c;
    }
    const float inv = rsqrtf(block_sum(v, scratch) / (float)d + eps);
    float* yr = y + (size_t)r * d;
    for (int i = threadIdx.x; i < d; i += blockDim.x)
        yr[i] = (xr[i] - mean) * inv * to_f32(gamma[i]) + to_f32(beta[i]);
}

#define SH_LAYER_NORM(S, W)                                                                      \
    extern "C" __global__ void layer_norm_##S(const float* x, const W* gamma, const W* beta,    \
                                              float* y, int rows, int d, float eps) {           \
        layer_norm<W>(x, gamma, beta, y, rows, d, eps);                                          \
    }
SH_INSTANTIATE_W(SH_LAYER_NORM)
