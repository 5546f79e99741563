// Causal attention of every (batch row, head), flash-attention style: query tiles of BQ rows
// stream over key tiles of BKV keys with an online softmax (running max m, running sum l,
// rescaled accumulator); the [T, Tk] score matrix never exists.
//
// Layouts: q [B*T, H*dh] (row b*T + t), k and v [B*Tk, H*dh] (keys = [memory; current]),
// out R [B*T, H*dh]. q and k are already scaled by dh^-0.25 (and rotated for RoPE models).
// Visibility (kernels/src/attention.rs): query r (0..T) sees key c iff c <= r + offset,
// offset = Tk - T: memory always visible, the current chunk causal.
// XL (kp != null): kp [Tk, H*dh], row j = position key Kp(j - (Tk-1)) (relative positions
// -(Tk-1)..0); logit(r, c) += q_r . kp[c - r + T - 1] (= Kp(c - r - offset)). The BQ+BKV-1 rows
// a tile pair needs (a diagonal band) are staged in shared memory.
//
// Grid: (ceil(T/BQ), B*H), block: 128 threads, dynamic shared memory
// attention_smem_bytes(dh, xl) floats (see runtime/src/backend/cuda/geometry.rs):
// q BQ*dh, k/v BKV*dh (k then v reuse it), kp (BQ+BKV-1)*dh if XL, o BQ*dh, p BQ*BKV,
// m/l/alpha 3*BQ.

#define AT_BQ 16
#define AT_BKV 32
#define AT_THREADS 128

extern "C" __global__ void flash_attention(const float* q, const float* k, const float* v,
                                           const float* kp, float* out, int batch, int t_len,
                                           int tk, int heads, int dh) {
    extern __shared__ float smem[];
    float* qs = smem;
    float* kv = qs + AT_BQ * dh;
    float* kps = kv + AT_BKV * dh;
    float* os = kps + (kp ? (AT_BQ + AT_BKV - 1) * dh : 0);
    float* ps = os + AT_BQ * dh;
    float* ms = ps + AT_BQ * AT_BKV;
    float* ls = ms + AT_BQ;
    float* alpha = ls + AT_BQ;

    const int b = blockIdx.y / heads, h = blockIdx.y % heads;
    const int r0 = blockIdx.x * AT_BQ;
    const int offset = tk - t_len;
    const long long hd = (long long)heads * dh;
    const int tid = threadIdx.x;
    if (b >= batch || r0 >= t_len) return;

    for (int i = tid; i < AT_BQ * dh; i += AT_THREADS) {
        const int rr = i / dh, d = i % dh;
        const int r = r0 + rr;
        qs[i] = r < t_len ? q[((long long)b * t_len + r) * hd + (long long)h * dh + d] : 0.0f;
        os[i] = 0.0f;
    }
    if (tid < AT_BQ) {
        ms[tid] = SH_NEG_INF;
        ls[tid] = 0.0f;
    }
    const int last_row = min(r0 + AT_BQ, t_len) - 1;
    const int keys = min(tk, last_row + offset + 1);
    __syncthreads();

    for (int c0 = 0; c0 < keys; c0 += AT_BKV) {
        for (int i = tid; i < AT_BKV * dh; i += AT_THREADS) {
            const int cc = i / dh, d = i % dh;
            const int c = c0 + cc;
            kv[i] = c < tk ? k[((long long)b * tk + c) * hd + (long long)h * dh + d] : 0.0f;
        }
        const int jbase = c0 - r0 - (AT_BQ - 1) + t_len - 1;
        if (kp) {
            for (int i = tid; i < (AT_BQ + AT_BKV - 1) * dh; i += AT_THREADS) {
                const int jj = i / dh, d = i % dh;
                const int j = jbase + jj;
                kps[i] = (j >= 0 && j < tk) ? kp[(long long)j * hd + (long long)h * dh + d] : 0.0f;
            }
        }
        __syncthreads();
        // Scores of the tile pair.
        for (int i = tid; i < AT_BQ * AT_BKV; i += AT_THREADS) {
            const int rr = i / AT_BKV, cc = i % AT_BKV;
            const int r = r0 + rr, c = c0 + cc;
            float s = SH_NEG_INF;
            if (r < t_len && c < tk && c <= r + offset) {
                const float* qr = qs + rr * dh;
                const float* kc = kv + cc * dh;
                float acc = 0.0f;
                for (int d = 0; d < dh; ++d) acc = fmaf(qr[d], kc[d], acc);
                if (kp) {
                    const float* pr = kps + (cc - rr + AT_BQ - 1) * dh;
                    float rel = 0.0f;
                    for (int d = 0; d < dh; ++d) rel = fmaf(qr[d], pr[d], rel);
                    acc += rel;
                }
                s = acc;
            }
            ps[i] = s;
        }
        __syncthreads();
        // Online softmax, one thread per query row.
        if (tid < AT_BQ) {
            float* row = ps + tid * AT_BKV;
            float mx = ms[tid];
            for (int cc = 0; cc < AT_BKV; ++cc) mx = fmaxf(mx, row[cc]);
            const float a = mx == SH_NEG_INF ? 1.0f : expf(ms[tid] - mx);
            float sum = 0.0f;
            for (int cc = 0; cc < AT_BKV; ++cc) {
                const float p = row[cc] == SH_NEG_INF ? 0.0f : expf(row[cc] - mx);
                row[cc] = p;
                sum += p;
            }
            ms[tid] = mx;
            ls[tid] = ls[tid] * a + sum;
            alpha[tid] = a;
        }
        __syncthreads();
        // Values of the key tile replace its keys.
        for (int i = tid; i < AT_BKV * dh; i += AT_THREADS) {
            const int cc = i / dh, d = i % dh;
            const int c = c0 + cc;
            kv[i] = c < tk ? v[((long long)b * tk + c) * hd + (long long)h * dh + d] : 0.0f;
        }
        __syncthreads();
        for (int i = tid; i < AT_BQ * dh; i += AT_THREADS) {
            const int rr = i / dh, d = i % dh;
            const float* p = ps + rr * AT_BKV;
            float acc = os[i] * alpha[rr];
            for (int cc = 0; cc < AT_BKV; ++cc) acc = fmaf(p[cc], kv[cc * dh + d], acc);
            os[i] = acc;
        }
        __syncthreads();
    }
    for (int i = tid; i < AT_BQ * dh; i += AT_THREADS) {
        const int rr = i / dh, d = i % dh;
        const int r = r0 + rr;
        if (r < t_len)
            out[((long long)b * t_len + r) * hd + (long long)h * dh + d] = os[i] / ls[rr];
    }
}
