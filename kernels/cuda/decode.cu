// Incremental decoding over a device-resident KV cache (RoPE / no-position models).
//
// Cache layout: k_cache, v_cache [B, H, capacity, dh] (one contiguous [capacity, dh] block per
// (batch row, head), so a head's keys stream contiguously).
// - kv_append: copies the new rows k_new, v_new [B*Tn, H*dh] (already scaled and rotated at
//   their absolute positions) to cache positions len .. len+Tn-1. Grid-stride.
// - decode_attention: queries q [B*Tq, H*dh] at absolute positions len_total - Tq + t attend
//   to keys 0 ..= their own position (len_total counts the appended rows). Grid (B*H, Tq),
//   block 128 threads (4 warps); dynamic shared memory (2*dh + DEC_TILE + 33) floats.
//   Per key tile of DEC_TILE keys: one warp per key computes q.k with its lanes over dh
//   (coalesced), an online softmax over the tile, then every thread accumulates its output
//   channels over the tile's values (coalesced across threads).

#define DEC_TILE 128
#define DEC_THREADS 128

extern "C" __global__ void kv_append(const float* k_new, const float* v_new, float* k_cache,
                                     float* v_cache, int batch, int t_new, int heads, int dh,
                                     int capacity, int len) {
    const long long n = (long long)batch * t_new * heads * dh;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const int d = (int)(i % dh);
        const int h = (int)((i / dh) % heads);
        const long long bt = i / ((long long)heads * dh);
        const int t = (int)(bt % t_new), b = (int)(bt / t_new);
        const long long dst = (((long long)b * heads + h) * capacity + len + t) * dh + d;
        k_cache[dst] = k_new[i];
        v_cache[dst] = v_new[i];
    }
}

extern "C" __global__ void decode_attention(const float* q, const float* k_cache,
                                            const float* v_cache, float* out, int batch,
                                            int t_q, int heads, int dh, int capacity,
                                            int len_total) {
    extern __shared__ float smem[];
    float* qs = smem;
    float* os = qs + dh;
    float* ps = os + dh;
    float* scratch = ps + DEC_TILE;
    const int b = blockIdx.x / heads, h = blockIdx.x % heads, t = blockIdx.y;
    if (b >= batch || t >= t_q) return;
    const long long hd = (long long)heads * dh;
    const float* qrow = q + ((long long)b * t_q + t) * hd + (long long)h * dh;
    const float* kc = k_cache + ((long long)b * heads + h) * capacity * dh;
    const float* vc = v_cache + ((long long)b * heads + h) * capacity * dh;
    const int visible = len_total - t_q + t + 1;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    for (int d = tid; d < dh; d += DEC_THREADS) {
        qs[d] = qrow[d];
        os[d] = 0.0f;
    }
    float m = SH_NEG_INF, l = 0.0f;
    __syncthreads();
    for (int c0 = 0; c0 < visible; c0 += DEC_TILE) {
        for (int cc = warp; cc < DEC_TILE; cc += DEC_THREADS / 32) {
            const int c = c0 + cc;
            float acc = 0.0f;
            if (c < visible)
                for (int d = lane; d < dh; d += 32) acc = fmaf(qs[d], kc[(long long)c * dh + d], acc);
            acc = warp_sum(acc);
            if (lane == 0) ps[cc] = c < visible ? acc : SH_NEG_INF;
        }
        __syncthreads();
        const float s = tid < DEC_TILE ? ps[tid] : SH_NEG_INF;
        const float mx = fmaxf(m, block_max(s, scratch));
        const float p = s == SH_NEG_INF ? 0.0f : expf(s - mx);
        const float sum = block_sum(p, scratch);
        const float a = m == SH_NEG_INF ? 0.0f : expf(m - mx);
        if (tid < DEC_TILE) ps[tid] = p;
        __syncthreads();
        const int n = min(DEC_TILE, visible - c0);
        for (int d = tid; d < dh; d += DEC_THREADS) {
            float acc = os[d] * a;
            for (int cc = 0; cc < n; ++cc) acc = fmaf(ps[cc], vc[(long long)(c0 + cc) * dh + d], acc);
            os[d] = acc;
        }
        l = l * a + sum;
        m = mx;
        __syncthreads();
    }
    float* orow = out + ((long long)b * t_q + t) * hd + (long long)h * dh;
    for (int d = tid; d < dh; d += DEC_THREADS) orow[d] = os[d] / l;
}
