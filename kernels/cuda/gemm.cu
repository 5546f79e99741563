// The portable GEMM, the twin of the cuBLAS call on CUDA (what the OpenCL device runs for
// every plain product): y[m, n] = alpha * x[m, k] @ w[n, k]^T + beta * y, row-major views
// (x rows ldx apart from x_off, w rows k apart from w_off, y rows ldy apart from y_off),
// w f32 or bf16 (wtype), f32 accumulation. beta is 0 (y not read) or 1.
//
// Tiling: a 64 x 64 output tile per block, K in steps of 16 staged in local memory, 256
// threads with 4 x 4 outputs each (rows ty + 16 i, columns tx + 16 j).
// Grid: (ceil(n / 64), ceil(m / 64)), block: 256.

#define GM_BM 64
#define GM_BN 64
#define GM_BK 16
#define GM_THREADS 256

KERNEL void gemm_nt(GLOBAL_MEM const float* x, i64 x_off, int ldx, GLOBAL_MEM const void* w,
                    i64 w_off, int wtype, GLOBAL_MEM float* y, i64 y_off, int ldy, int m, int n,
                    int k, float alpha, float beta) {
    LOCAL_MEM float as[GM_BK][GM_BM + 4];
    LOCAL_MEM float bs[GM_BK][GM_BN + 4];
    const int m0 = (int)GID_1 * GM_BM, n0 = (int)GID_0 * GM_BN;
    const int tid = LID_0, tx = tid % 16, ty = tid / 16;
    float acc[4][4];
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
    for (int k0 = 0; k0 < k; k0 += GM_BK) {
        for (int q = 0; q < (GM_BM * GM_BK) / GM_THREADS; ++q) {
            const int lin = tid + q * GM_THREADS;
            const int mm = lin / GM_BK, kk = lin % GM_BK;
            const int r = m0 + mm, c = k0 + kk;
            as[kk][mm] = (r < m && c < k) ? x[x_off + (i64)r * ldx + c] : 0.0f;
        }
        for (int q = 0; q < (GM_BN * GM_BK) / GM_THREADS; ++q) {
            const int lin = tid + q * GM_THREADS;
            const int nn = lin / GM_BK, kk = lin % GM_BK;
            const int r = n0 + nn, c = k0 + kk;
            bs[kk][nn] = (r < n && c < k) ? load_w(w, w_off + (i64)r * k + c, wtype) : 0.0f;
        }
        local_barrier();
        for (int kk = 0; kk < GM_BK; ++kk) {
            float a[4], b[4];
            for (int i = 0; i < 4; ++i) a[i] = as[kk][ty + 16 * i];
            for (int j = 0; j < 4; ++j) b[j] = bs[kk][tx + 16 * j];
            for (int i = 0; i < 4; ++i)
                for (int j = 0; j < 4; ++j) acc[i][j] = sh_fma(a[i], b[j], acc[i][j]);
        }
        local_barrier();
    }
    for (int i = 0; i < 4; ++i) {
        const int r = m0 + ty + 16 * i;
        if (r >= m) continue;
        for (int j = 0; j < 4; ++j) {
            const int c = n0 + tx + 16 * j;
            if (c >= n) continue;
            GLOBAL_MEM float* out = y + y_off + (i64)r * ldy + c;
            const float v = alpha * acc[i][j];
            *out = beta != 0.0f ? *out + v : v;
        }
    }
}
