// Element-wise kernels, grid-stride loops (elementwise geometry: 256 threads, enough blocks).
// - bias_act: y[r, c] = act(y[r, c] + bias[c]) over rows of `cols` (has_bias 0: no bias);
//   act = relu when relu != 0 (also the plan's Relu op, without a bias).
// - add_inplace: y += x (the residual stream).
// - gate_heads (E = 1 variant): R[r, h*dh + i] *= sigmoid(logits[r, h]) with logits [rows, H]
//   f32 (SPEC.md section 1: sigmoid computed in float32; here in f64, rounded once, as the CPU).
// - copy_cols: dst[r, dst_col + c] = scale * src[r, src_col + c] (rows `ld` apart): a column
//   block of a merged projection, scaled (q and k by dh^-0.25) or not (router logits).
// - concat_seq: y [B, M+T, D] = cat(a [B, M, D], b [B, T, D]) on the sequence axis.
// - cast_rows_bf16: y [rows, cols] bf16 = x rows (`ldx` apart from x_off), for the bf16
//   tensor-core GEMM's activations.

KERNEL void bias_act(GLOBAL_MEM float* y, GLOBAL_MEM const void* bias, int wtype, int has_bias,
                     i64 rows, int cols, int relu) {
    const i64 n = rows * cols;
    for (i64 i = GID_0 * LDIM_0 + LID_0; i < n; i += GDIM_0 * LDIM_0) {
        float v = y[i] + (has_bias ? load_w(bias, i % cols, wtype) : 0.0f);
        if (relu) v = sh_fmax(v, 0.0f);
        y[i] = v;
    }
}

KERNEL void add_inplace(GLOBAL_MEM float* y, GLOBAL_MEM const float* x, i64 n) {
    for (i64 i = GID_0 * LDIM_0 + LID_0; i < n; i += GDIM_0 * LDIM_0) y[i] += x[i];
}

KERNEL void gate_heads(GLOBAL_MEM float* r, GLOBAL_MEM const float* logits, i64 rows, int heads,
                       int dh) {
    const i64 n = rows * heads * dh;
    for (i64 i = GID_0 * LDIM_0 + LID_0; i < n; i += GDIM_0 * LDIM_0) {
        const i64 row = i / ((i64)heads * dh);
        const int h = (int)((i / dh) % heads);
        const double g = 1.0 / (1.0 + sh_exp_f64(-(double)logits[row * heads + h]));
        r[i] = (float)((double)r[i] * g);
    }
}

KERNEL void copy_cols(GLOBAL_MEM const float* src, int src_ld, int src_col, GLOBAL_MEM float* dst,
                      int dst_ld, int dst_col, i64 rows, int cols, float scale) {
    const i64 n = rows * cols;
    for (i64 i = GID_0 * LDIM_0 + LID_0; i < n; i += GDIM_0 * LDIM_0) {
        const i64 r = i / cols;
        const int c = (int)(i % cols);
        dst[r * dst_ld + dst_col + c] = scale * src[r * src_ld + src_col + c];
    }
}

KERNEL void concat_seq(GLOBAL_MEM const float* a, GLOBAL_MEM const float* b, GLOBAL_MEM float* y,
                       int batch, int m, int t, int d) {
    const i64 n = (i64)batch * (m + t) * d;
    for (i64 i = GID_0 * LDIM_0 + LID_0; i < n; i += GDIM_0 * LDIM_0) {
        const int c = (int)(i % d);
        const i64 row = i / d;
        const int s = (int)(row % (m + t));
        const i64 bb = row / (m + t);
        y[i] = s < m ? a[(bb * m + s) * d + c] : b[(bb * t + (s - m)) * d + c];
    }
}

KERNEL void cast_rows_bf16(GLOBAL_MEM const float* x, i64 x_off, int ldx, GLOBAL_MEM bf16* y,
                           int rows, int cols) {
    const i64 n = (i64)rows * cols;
    for (i64 i = GID_0 * LDIM_0 + LID_0; i < n; i += GDIM_0 * LDIM_0) {
        const i64 r = i / cols;
        const int c = (int)(i % cols);
        y[i] = f32_to_bf16(x[x_off + r * ldx + c]);
    }
}
