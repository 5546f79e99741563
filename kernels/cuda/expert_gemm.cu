// The grouped expert GEMM: for every expert e, the rows routed to it (sorted positions
// offsets[e] .. offsets[e+1] of `slots`, from routing.cu) times w[e] ([in_dim, out_dim],
// row-major), with gate weighting and the reduction over k and heads fused in the epilogue.
//
// Slot s = (row*groups + g)*k + j (routing.cu). Input row of sorted position p, slot s:
//   in_by_slot = 1: x + row*x_row_stride + g*x_group_stride   (V: x = LN output [n, D],
//                   group stride 0; O: x = attention output R [n, H*dh], group stride dh)
//   in_by_slot = 0: x + p*x_row_stride                          (σ-MoE second product: the
//                   hidden rows written by the first, in sorted order)
// Epilogue:
//   0 GATED_ADD : atomicAdd(y + row*y_row_stride + g*y_group_stride + c, gate[s] * acc)
//                 (V: y = V [n, H*dh], strides (H*dh, dh); O and σ-MoE: y [n, D], strides
//                 (D, 0)); y zeroed before. Float atomics: the sum over a row's k*H slots is
//                 order-nondeterministic in its last bits, nothing more.
//   1 RELU_STORE: y[p*y_row_stride + c] = relu(acc) (σ-MoE hidden, sorted order).
//
// Tiling: BM x BN = 64 x 64 output tile per block, BK = 16, 256 threads with 4 x 4 outputs
// each, f32 accumulation. blockIdx.x = column tile, blockIdx.y = row tile counted across the
// experts: tile t belongs to the expert whose ceil(count/BM) tiles contain it (a scan of the
// device offsets, no host round trip). gridDim.y = ceil(n_slots/BM) + n_experts bounds the
// real tile count; blocks past it exit at once.

#define EG_BM 64
#define EG_BN 64
#define EG_BK 16
#define EG_THREADS 256

template <typename W>
__device__ void expert_gemm(const float* x, long long x_row_stride, long long x_group_stride,
                            int in_by_slot, int groups, int k, const W* w, int in_dim,
                            int out_dim, int n_experts, const int* offsets, const int* slots,
                            const float* gates, float* y, long long y_row_stride,
                            long long y_group_stride, int epilogue) {
    __shared__ float as[EG_BK][EG_BM + 4];
    __shared__ float bs[EG_BK][EG_BN];
    __shared__ const float* arow[EG_BM];
    // Find this block's expert and row range.
    int t = blockIdx.y, e = -1, m0 = 0, m_end = 0;
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
    if (e < 0) return;  // uniform over the block: before any barrier
    const int n0 = blockIdx.x * EG_BN;
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    if (tid < EG_BM) {
        const int p = m0 + tid;
        const float* ptr = 0;
        if (p < m_end) {
            if (in_by_slot) {
                const int s = slots[p];
                const long long row = s / (groups * k);
                const int g = (s / k) % groups;
                ptr = x + row * x_row_stride + g * x_group_stride;
            } else {
                ptr = x + (long long)p * x_row_stride;
            }
        }
        arow[tid] = ptr;
    }
    const W* we = w + (size_t)e * in_dim * out_dim;
    float acc[4][4];
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
    __syncthreads();
    for (int k0 = 0; k0 < in_dim; k0 += EG_BK) {
        for (int q = 0; q < (EG_BM * EG_BK) / EG_THREADS; ++q) {
            const int lin = tid + q * EG_THREADS;
            const int mm = lin / EG_BK, kk = lin % EG_BK;
            const float* ptr = arow[mm];
            as[kk][mm] = (ptr && k0 + kk < in_dim) ? ptr[k0 + kk] : 0.0f;
        }
        for (int q = 0; q < (EG_BK * EG_BN) / EG_THREADS; ++q) {
            const int lin = tid + q * EG_THREADS;
            const int kk = lin / EG_BN, nn = lin % EG_BN;
            const bool ok = k0 + kk < in_dim && n0 + nn < out_dim;
            bs[kk][nn] = ok ? to_f32(we[(size_t)(k0 + kk) * out_dim + n0 + nn]) : 0.0f;
        }
        __syncthreads();
        for (int kk = 0; kk < EG_BK; ++kk) {
            float a[4], b[4];
            for (int i = 0; i < 4; ++i) a[i] = as[kk][ty + 16 * i];
            for (int j = 0; j < 4; ++j) b[j] = bs[kk][tx + 16 * j];
            for (int i = 0; i < 4; ++i)
                for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
    for (int i = 0; i < 4; ++i) {
        const int p = m0 + ty + 16 * i;
        if (p >= m_end) continue;
        const int s = slots[p];
        const long long row = s / (groups * k);
        const int g = (s / k) % groups;
        for (int j = 0; j < 4; ++j) {
            const int c = n0 + tx + 16 * j;
            if (c >= out_dim) continue;
            if (epilogue == 0) {
                atomicAdd(y + row * y_row_stride + g * y_group_stride + c, gates[s] * acc[i][j]);
            } else {
                y[(long long)p * y_row_stride + c] = fmaxf(acc[i][j], 0.0f);
            }
        }
    }
}

#define SH_EXPERT_GEMM(S, W)                                                                     \
    extern "C" __global__ void expert_gemm_##S(                                                 \
        const float* x, long long x_row_stride, long long x_group_stride, int in_by_slot,       \
        int groups, int k, const W* w, int in_dim, int out_dim, int n_experts,                   \
        const int* offsets, const int* slots, const float* gates, float* y,                      \
        long long y_row_stride, long long y_group_stride, int epilogue) {                        \
        expert_gemm<W>(x, x_row_stride, x_group_stride, in_by_slot, groups, k, w, in_dim,        \
                       out_dim, n_experts, offsets, slots, gates, y, y_row_stride,               \
                       y_group_stride, epilogue);                                                \
    }
SH_INSTANTIATE_W(SH_EXPERT_GEMM)
