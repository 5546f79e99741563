// The grouped expert GEMM: for every expert e, the rows routed to it (sorted positions
// offsets[e] .. offsets[e+1] of `slots`, from routing.cu) times w[e] ([in_dim, out_dim],
// row-major, f32 or bf16 by wtype), with gate weighting and the reduction over k and heads
// fused in the epilogue.
//
// Slot s = (row*groups + g)*k + j (routing.cu). Input row of sorted position p, slot s:
//   in_by_slot = 1: x + row*x_row_stride + g*x_group_stride   (V: x = LN output [n, D],
//                   group stride 0; O: x = attention output R [n, H*dh], group stride dh)
//   in_by_slot = 0: x + p*x_row_stride                          (σ-MoE second product: the
//                   hidden rows written by the first, in sorted order)
// Epilogue:
//   0 GATED_ADD : atomic y[row*y_row_stride + g*y_group_stride + c] += gate[s] * acc
//                 (V: y = V [n, H*dh], strides (H*dh, dh); O and σ-MoE: y [n, D], strides
//                 (D, 0)); y zeroed before. Float atomics: the sum over a row's k*H slots is
//                 order-nondeterministic in its last bits, nothing more.
//   1 RELU_STORE: y[p*y_row_stride + c] = relu(acc) (σ-MoE hidden, sorted order).
//
// Tiling: BM x BN = 64 x 64 output tile per block, BK = 16, 256 threads with 4 x 4 outputs
// each, f32 accumulation. GID_0 = column tile, GID_1 = row tile counted across the experts:
// tile t belongs to the expert whose ceil(count/BM) tiles contain it (a scan of the device
// offsets, no host round trip). The grid's row count ceil(n_slots/BM) + n_experts bounds the
// real tile count; blocks past it do no work.

#define EG_BM 64
#define EG_BN 64
#define EG_BK 16
#define EG_THREADS 256

KERNEL void expert_gemm(GLOBAL_MEM const float* x, i64 x_row_stride, i64 x_group_stride,
                        int in_by_slot, int groups, int k, GLOBAL_MEM const void* w, int wtype,
                        int in_dim, int out_dim, int n_experts, GLOBAL_MEM const int* offsets,
                        GLOBAL_MEM const int* slots, GLOBAL_MEM const float* gates,
                        GLOBAL_MEM float* y, i64 y_row_stride, i64 y_group_stride,
                        int epilogue) {
    LOCAL_MEM float as[EG_BK][EG_BM + 4];
    LOCAL_MEM float bs[EG_BK][EG_BN + 4];
    LOCAL_MEM i64 arow[EG_BM];
    // This block's expert and row range, uniform over the block. A block past the real tile
    // count (e < 0) has an empty range and no K steps, but still reaches every barrier (no
    // early return: PoCL miscompiles a return before one).
    int t = (int)GID_1, e = -1, m0 = 0, m_end = 0;
    for (int ex = 0; ex < n_experts; ++ex) {
        const int lo = offsets[ex], hi = offsets[ex + 1];
        const int tiles = (hi - lo + EG_BM - 1) / EG_BM;
        if (t < tiles) {
            e = ex;
            m0 = lo + t * EG_BM;
            m_end = hi;
            break;
        }
        t -= tiles;
    }
    const int k_end = e < 0 ? 0 : in_dim;
    const int n0 = (int)GID_0 * EG_BN;
    const int tid = LID_0, tx = tid % 16, ty = tid / 16;
    if (tid < EG_BM) {
        const int p = m0 + tid;
        i64 at = -1;
        if (p < m_end) {
            if (in_by_slot) {
                const int s = slots[p];
                const i64 row = s / (groups * k);
                const int g = (s / k) % groups;
                at = row * x_row_stride + g * x_group_stride;
            } else {
                at = (i64)p * x_row_stride;
            }
        }
        arow[tid] = at;
    }
    const i64 we = (i64)(e < 0 ? 0 : e) * in_dim * out_dim;
    float acc[4][4];
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
    local_barrier();
    for (int k0 = 0; k0 < k_end; k0 += EG_BK) {
        for (int q = 0; q < (EG_BM * EG_BK) / EG_THREADS; ++q) {
            const int lin = tid + q * EG_THREADS;
            const int mm = lin / EG_BK, kk = lin % EG_BK;
            const i64 at = arow[mm];
            as[kk][mm] = (at >= 0 && k0 + kk < in_dim) ? x[at + k0 + kk] : 0.0f;
        }
        for (int q = 0; q < (EG_BK * EG_BN) / EG_THREADS; ++q) {
            const int lin = tid + q * EG_THREADS;
            const int kk = lin / EG_BN, nn = lin % EG_BN;
            const int ok = k0 + kk < in_dim && n0 + nn < out_dim;
            bs[kk][nn] = ok ? load_w(w, we + (i64)(k0 + kk) * out_dim + n0 + nn, wtype) : 0.0f;
        }
        local_barrier();
        for (int kk = 0; kk < EG_BK; ++kk) {
            float a[4], b[4];
            for (int i = 0; i < 4; ++i) a[i] = as[kk][ty + 16 * i];
            for (int j = 0; j < 4; ++j) b[j] = bs[kk][tx + 16 * j];
            for (int i = 0; i < 4; ++i)
                for (int j = 0; j < 4; ++j) acc[i][j] = sh_fma(a[i], b[j], acc[i][j]);
        }
        local_barrier();
    }
    for (int i = 0; i < 4; ++i) {
        const int p = m0 + ty + 16 * i;
        if (p >= m_end) continue;
        const int s = slots[p];
        const i64 row = s / (groups * k);
        const int g = (s / k) % groups;
        for (int j = 0; j < 4; ++j) {
            const int c = n0 + tx + 16 * j;
            if (c >= out_dim) continue;
            if (epilogue == 0) {
                sh_atomic_add_f32(y + row * y_row_stride + g * y_group_stride + c,
                                  gates[s] * acc[i][j]);
            } else {
                y[(i64)p * y_row_stride + c] = sh_fmax(acc[i][j], 0.0f);
            }
        }
    }
}
