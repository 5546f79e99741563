// Positional encodings (SPEC.md section 2).
//
// rope_inplace: rotates the first n_rot channels of every head of x [rows, heads*dh] in place,
// half-split (GPT-NeoX) convention: (a, b) -> (a cos - b sin, b cos + a sin) for channel pairs
// (i, i + n_rot/2). inv_freq[i] = base^(-2i/n_rot) (normalised by n_rot, not dh). Row r has
// position pos_offset + r % period: queries use period = T and pos_offset = cached/memory
// length, keys period = Tk and offset 0. Angles and the rotation in f64, rounded once to f32,
// as the CPU kernel. Applied to q and k after the dh^-0.25 scale (linear: the same result).
// One thread per (row, head, pair); grid-stride.
//
// xl_sinusoid: pe [count, d] for positions p = lo + j, pe[2i] = sin(p w_i), pe[2i+1] = cos(p w_i),
// w_i = 10000^(-2i/d), each rounded to f32, then multiplied by `scale` (dh^-0.25) in f64 and
// rounded again, as the CPU. The position keys Kp = pe @ Wpk^T are a plain GEMM.

KERNEL void rope_inplace(GLOBAL_MEM float* x, i64 rows, int heads, int dh, int n_rot, double base,
                         i64 period, i64 pos_offset) {
    const int half_rot = n_rot / 2;
    const i64 n = rows * heads * half_rot;
    for (i64 t = GID_0 * LDIM_0 + LID_0; t < n; t += GDIM_0 * LDIM_0) {
        const int i = (int)(t % half_rot);
        const i64 rh = t / half_rot;
        const i64 r = rh / heads;
        const int h = (int)(rh % heads);
        const double pos = (double)(pos_offset + r % period);
        const double inv_freq = sh_pow_f64(base, -(2.0 * i) / (double)n_rot);
        double s, c;
        sh_sincos_f64(pos * inv_freq, &s, &c);
        GLOBAL_MEM float* head = x + r * heads * dh + (i64)h * dh;
        const double a = head[i], b = head[i + half_rot];
        head[i] = (float)(a * c - b * s);
        head[i + half_rot] = (float)(b * c + a * s);
    }
}

KERNEL void xl_sinusoid(GLOBAL_MEM float* pe, int count, int d, i64 lo, double scale) {
    const i64 n = (i64)count * (d / 2);
    for (i64 t = GID_0 * LDIM_0 + LID_0; t < n; t += GDIM_0 * LDIM_0) {
        const int i = (int)(t % (d / 2));
        const i64 j = t / (d / 2);
        const double p = (double)(lo + j);
        const double freq = sh_pow_f64(10000.0, -(2.0 * i) / (double)d);
        double s, c;
        sh_sincos_f64(p * freq, &s, &c);
        GLOBAL_MEM float* row = pe + j * d;
        row[2 * i] = (float)((double)(float)s * scale);
        row[2 * i + 1] = (float)((double)(float)c * scale);
    }
}
