// Small epilogues around the cuBLAS products (dense q/k/v/o, FFN, output layer):
// - bias_act: y[r, c] = act(y[r, c] + bias[c]) (+ residual[r, c]); act = relu when relu != 0.
// - add_inplace: y += x (the residual stream).
// - gate_heads (E = 1 variant): R[r, h*dh + i] *= sigmoid(logits[r, h]), logits from a cuBLAS
//   product in f32 (SPEC.md section 1: sigmoid computed in float32).
// Grid-stride loops; launch with elementwise geometry (256 threads, enough blocks).

template <typename W>
__device__ void bias_act(float* y, const W* bias, const float* residual, long long rows,
                         int cols, int relu) {
    const long long n = rows * cols;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        float v = y[i] + (bias ? to_f32(bias[i % cols]) : 0.0f);
        if (relu) v = fmaxf(v, 0.0f);
        if (residual) v += residual[i];
        y[i] = v;
    }
}

#define SH_BIAS_ACT(S, W)                                                                        \
    extern "C" __global__ void bias_act_##S(float* y, const W* bias, const float* residual,     \
                                            long long rows, int cols, int relu) {               \
        bias_act<W>(y, bias, residual, rows, cols, relu);                                        \
    }
SH_INSTANTIATE_W(SH_BIAS_ACT)

extern "C" __global__ void add_inplace(float* y, const float* x, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x)
        y[i] += x[i];
}

extern "C" __global__ void gate_heads(float* r, const float* logits, long long rows, int heads,
                                      int dh) {
    const long long n = rows * heads * dh;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const long long row = i / ((long long)heads * dh);
        const int h = (int)((i / dh) % heads);
        r[i] *= sigmoid_exact(logits[row * heads + h]);
    }
}

// f32 -> bf16 (for weights converted on the device, and bf16 outputs).
extern "C" __global__ void cast_f32_bf16(const float* x, bf16* y, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x)
        y[i] = f32_to_bf16(x[i]);
}
