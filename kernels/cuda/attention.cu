// Causal attention of every (batch row, head), flash-attention style: query tiles of BQ rows
// stream over key tiles of BKV keys with an online softmax (running max m, running sum l,
// rescaled accumulator); the [T, Tk] score matrix never exists.
//
// Layouts: q and out R [B*T, H*dh] (row b*T + t). Keys and values [B, kv_rows, H*dh]: batch
// row b's key c is row b*kv_rows + c, so the same kernel reads a pass's own keys
// (kv_rows = Tk) and a KV cache with spare capacity (kv_rows = capacity, Tk = keys held).
// q and k are already scaled by dh^-0.25 (and rotated for RoPE models).
// Visibility (kernels/src/attention.rs): query r (0..T) sees key c iff c <= r + offset,
// offset = Tk - T: memory (or cached keys) always visible, the current chunk causal.
// XL (has_kp): kp [Tk, H*dh], row j = position key Kp(j - (Tk-1)) (relative positions
// -(Tk-1)..0); logit(r, c) += q_r . kp[c - r + T - 1] (= Kp(c - r - offset)). The BQ+BKV-1 rows
// a tile pair needs (a diagonal band) are staged in local memory.
//
// Grid: (ceil(T/BQ), B*H), block: 128 threads, dynamic local memory of
// attention_local_floats(dh, xl) floats (kernels/src/gpu/geometry.rs): q BQ*dh, k/v BKV*dh
// (k then v reuse it), kp (BQ+BKV-1)*dh if XL, o BQ*dh, p BQ*BKV, m/l/alpha 3*BQ.
//
// kv_append: copies the new rows k_new, v_new [B*Tn, H*dh] (already scaled and rotated at
// their absolute positions) to rows len .. len+Tn-1 of each batch row of the caches
// [B, capacity, H*dh]. Grid-stride.

#define AT_BQ 16
#define AT_BKV 32
#define AT_THREADS 128

KERNEL void flash_attention(GLOBAL_MEM const float* q, GLOBAL_MEM const float* k,
                            GLOBAL_MEM const float* v, GLOBAL_MEM const float* kp, int has_kp,
                            GLOBAL_MEM float* out, int batch, int t_len, int tk, int kv_rows,
                            int heads, int dh LOCAL_ARG(float, smem)) {
    LOCAL_DECL(float, smem);
    LOCAL_PTR float* qs = smem;
    LOCAL_PTR float* kv = qs + AT_BQ * dh;
    LOCAL_PTR float* kps = kv + AT_BKV * dh;
    LOCAL_PTR float* os = kps + (has_kp ? (AT_BQ + AT_BKV - 1) * dh : 0);
    LOCAL_PTR float* ps = os + AT_BQ * dh;
    LOCAL_PTR float* ms = ps + AT_BQ * AT_BKV;
    LOCAL_PTR float* ls = ms + AT_BQ;
    LOCAL_PTR float* alpha = ls + AT_BQ;

    const int b = (int)(GID_1 / heads), h = (int)(GID_1 % heads);
    const int r0 = (int)GID_0 * AT_BQ;
    const int offset = tk - t_len;
    const i64 hd = (i64)heads * dh;
    const i64 kv_base = (i64)b * kv_rows * hd + (i64)h * dh;
    const int tid = LID_0;
    // The grid is exactly (ceil(T/BQ), B*H): no block is idle, and none returns early (every
    // work-item must reach every barrier; PoCL miscompiles a return before one).

    for (int i = tid; i < AT_BQ * dh; i += AT_THREADS) {
        const int rr = i / dh, d = i % dh;
        const int r = r0 + rr;
        qs[i] = r < t_len ? q[((i64)b * t_len + r) * hd + (i64)h * dh + d] : 0.0f;
        os[i] = 0.0f;
    }
    if (tid < AT_BQ) {
        ms[tid] = SH_NEG_INF;
        ls[tid] = 0.0f;
    }
    const int last_row = sh_min(r0 + AT_BQ, t_len) - 1;
    const int keys = sh_min(tk, last_row + offset + 1);
    local_barrier();

    for (int c0 = 0; c0 < keys; c0 += AT_BKV) {
        for (int i = tid; i < AT_BKV * dh; i += AT_THREADS) {
            const int cc = i / dh, d = i % dh;
            const int c = c0 + cc;
            kv[i] = c < tk ? k[kv_base + (i64)c * hd + d] : 0.0f;
        }
        const int jbase = c0 - r0 - (AT_BQ - 1) + t_len - 1;
        if (has_kp) {
            for (int i = tid; i < (AT_BQ + AT_BKV - 1) * dh; i += AT_THREADS) {
                const int jj = i / dh, d = i % dh;
                const int j = jbase + jj;
                kps[i] = (j >= 0 && j < tk) ? kp[(i64)j * hd + (i64)h * dh + d] : 0.0f;
            }
        }
        local_barrier();
        // Scores of the tile pair.
        for (int i = tid; i < AT_BQ * AT_BKV; i += AT_THREADS) {
            const int rr = i / AT_BKV, cc = i % AT_BKV;
            const int r = r0 + rr, c = c0 + cc;
            float s = SH_NEG_INF;
            if (r < t_len && c < tk && c <= r + offset) {
                LOCAL_PTR const float* qr = qs + rr * dh;
                LOCAL_PTR const float* kc = kv + cc * dh;
                float acc = 0.0f;
                for (int d = 0; d < dh; ++d) acc = sh_fma(qr[d], kc[d], acc);
                if (has_kp) {
                    LOCAL_PTR const float* pr = kps + (cc - rr + AT_BQ - 1) * dh;
                    float rel = 0.0f;
                    for (int d = 0; d < dh; ++d) rel = sh_fma(qr[d], pr[d], rel);
                    acc += rel;
                }
                s = acc;
            }
            ps[i] = s;
        }
        local_barrier();
        // Online softmax, one thread per query row.
        if (tid < AT_BQ) {
            LOCAL_PTR float* row = ps + tid * AT_BKV;
            float mx = ms[tid];
            for (int cc = 0; cc < AT_BKV; ++cc) mx = sh_fmax(mx, row[cc]);
            const float a = mx == SH_NEG_INF ? 1.0f : sh_exp(ms[tid] - mx);
            float sum = 0.0f;
            for (int cc = 0; cc < AT_BKV; ++cc) {
                const float p = row[cc] == SH_NEG_INF ? 0.0f : sh_exp(row[cc] - mx);
                row[cc] = p;
                sum += p;
            }
            ms[tid] = mx;
            ls[tid] = ls[tid] * a + sum;
            alpha[tid] = a;
        }
        local_barrier();
        // Values of the key tile replace its keys.
        for (int i = tid; i < AT_BKV * dh; i += AT_THREADS) {
            const int cc = i / dh, d = i % dh;
            const int c = c0 + cc;
            kv[i] = c < tk ? v[kv_base + (i64)c * hd + d] : 0.0f;
        }
        local_barrier();
        for (int i = tid; i < AT_BQ * dh; i += AT_THREADS) {
            const int rr = i / dh, d = i % dh;
            LOCAL_PTR const float* p = ps + rr * AT_BKV;
            float acc = os[i] * alpha[rr];
            for (int cc = 0; cc < AT_BKV; ++cc) acc = sh_fma(p[cc], kv[cc * dh + d], acc);
            os[i] = acc;
        }
        local_barrier();
    }
    for (int i = tid; i < AT_BQ * dh; i += AT_THREADS) {
        const int rr = i / dh, d = i % dh;
        const int r = r0 + rr;
        if (r < t_len) out[((i64)b * t_len + r) * hd + (i64)h * dh + d] = os[i] / ls[rr];
    }
}

KERNEL void kv_append(GLOBAL_MEM const float* k_new, GLOBAL_MEM const float* v_new,
                      GLOBAL_MEM float* k_cache, GLOBAL_MEM float* v_cache, int batch,
                      int t_new, int hd, int capacity, int len) {
    const i64 n = (i64)batch * t_new * hd;
    for (i64 i = GID_0 * LDIM_0 + LID_0; i < n; i += GDIM_0 * LDIM_0) {
        const int c = (int)(i % hd);
        const i64 bt = i / hd;
        const int t = (int)(bt % t_new), b = (int)(bt / t_new);
        const i64 dst = ((i64)b * capacity + len + t) * hd + c;
        k_cache[dst] = k_new[i];
        v_cache[dst] = v_new[i];
    }
}
