// Row-wise reductions; grid: exactly (rows), block: 256 threads (a power of two). No early
// return: every work-item reaches every barrier (PoCL miscompiles a return before one).
//
// layer_norm: over the last dim (eps from the model, 1e-5 in every paper run), affine with
// bias: y = (x - mean) / sqrt(var + eps) * gamma + beta, biased variance, f32 throughout.
// Two passes over the row (mean, then centred variance) as torch does.
//
// softmax_rows: x[r, :] = softmax(x[r, :]) in place (the plan's Softmax op, last axis).

KERNEL void layer_norm(GLOBAL_MEM const float* x, GLOBAL_MEM const void* gamma,
                       GLOBAL_MEM const void* beta, int wtype, GLOBAL_MEM float* y, int rows,
                       int d, float eps) {
    LOCAL_MEM float scratch[SH_REDUCE_SCRATCH];
    const i64 r = GID_0;
    GLOBAL_MEM const float* xr = x + r * d;
    float s = 0.0f;
    for (int i = LID_0; i < d; i += LDIM_0) s += xr[i];
    const float mean = block_sum(s, scratch) / (float)d;
    float v = 0.0f;
    for (int i = LID_0; i < d; i += LDIM_0) {
        const float c = xr[i] - mean;
        v += c * c;
    }
    const float inv = sh_rsqrt(block_sum(v, scratch) / (float)d + eps);
    GLOBAL_MEM float* yr = y + r * d;
    for (int i = LID_0; i < d; i += LDIM_0)
        yr[i] = (xr[i] - mean) * inv * load_w(gamma, i, wtype) + load_w(beta, i, wtype);
}

KERNEL void softmax_rows(GLOBAL_MEM float* x, int rows, int cols) {
    LOCAL_MEM float scratch[SH_REDUCE_SCRATCH];
    const i64 r = GID_0;
    GLOBAL_MEM float* xr = x + r * cols;
    float m = SH_NEG_INF;
    for (int i = LID_0; i < cols; i += LDIM_0) m = sh_fmax(m, xr[i]);
    m = block_max(m, scratch);
    float s = 0.0f;
    for (int i = LID_0; i < cols; i += LDIM_0) {
        const float e = sh_exp(xr[i] - m);
        xr[i] = e;
        s += e;
    }
    const float inv = 1.0f / block_sum(s, scratch);
    for (int i = LID_0; i < cols; i += LDIM_0) xr[i] *= inv;
}
