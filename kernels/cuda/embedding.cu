// Embedding lookup: out[r, :] = table[tokens[r], :] (no sqrt(D) scale, SPEC.md section 3).
// Grid: (rows), block: 256 threads striding over D. Tokens are range-checked on the host; an
// out-of-range id here writes zeros instead of reading out of bounds.

KERNEL void embedding(GLOBAL_MEM const i64* tokens, GLOBAL_MEM const void* table, int wtype,
                      GLOBAL_MEM float* out, int rows, int d, int vocab) {
    const i64 r = GID_0;
    if (r >= rows) return;
    const i64 tok = tokens[r];
    const int ok = tok >= 0 && tok < vocab;
    const i64 src = (ok ? tok : 0) * (i64)d;
    GLOBAL_MEM float* dst = out + r * d;
    for (int i = LID_0; i < d; i += LDIM_0) dst[i] = ok ? load_w(table, src + i, wtype) : 0.0f;
}
