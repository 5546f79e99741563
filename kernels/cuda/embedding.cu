// Embedding lookup: out[r, :] = table[tokens[r], :] (no sqrt(D) scale, SPEC.md section 3).
// Grid: (rows), block: 256 threads striding over D. Tokens are range-checked on the host; an
// out-of-range id here writes zeros instead of reading out of bounds.

template <typename W>
__device__ void embedding(const long long* tokens, const W* table, float* out, int rows, int d,
                          int vocab) {
    const int r = blockIdx.x;
    if (r >= rows) return;
    const long long tok = tokens[r];
    const bool ok = tok >= 0 && tok < vocab;
    const W* src = table + (size_t)(ok ? tok : 0) * d;
    float* dst = out + (size_t)r * d;
    for (int i = threadIdx.x; i < d; i += blockDim.x) dst[i] = ok ? to_f32(src[i]) : 0.0f;
}

#define SH_EMBEDDING(S, W)                                                                       \
    extern "C" __global__ void embedding_##S(const long long* tokens, const W* table,           \
                                             float* out, int rows, int d, int vocab) {          \
        embedding<W>(tokens, table, out, rows, d, vocab);                                        \
    }
SH_INSTANTIATE_W(SH_EMBEDDING)
