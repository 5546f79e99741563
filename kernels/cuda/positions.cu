// Positional encodings (SPEC.md section 2).
//
// rope_inplace: rotates the first n_rot channels of every head of x [rows, heads*dh] in place,
// half-split (GPT-NeoX) convention: (a, b) -> (a cos - b sin, b cos + a sin) for channel pairs
// (i, i + n_rot/2). inv_freq[i] = base^(-2i/n_rot) (normalised by n_rot, not dh). Row r has
// position pos_offset + r % period: queries use period = T and pos_offset = cached/memory
// length, keys period = Tk and offset 0. Angles and the rotation in f64, rounded once to f32,
// exactly as the CPU kernel. Applied to q and k AFTER the dh^-0.25 scale (linear: same result).
// One thread per (row, head, pair); grid-stride.
//
// xl_sinusoid: pe [count, d] for positions p = lo + j, pe[2i] = sin(p w_i), pe[2i+1] = cos(p w_i),
// w_i = 10000^(-2i/d), each rounded to f32 and then multiplied by `scale` (dh^-0.25) in f64 and
// rounded again, as the CPU. The position keys Kp = pe @ Wpk^T are a cuBLAS product.

extern "C" __global__ void rope_inplace(float* x, long long rows, int heads, int dh, int n_rot,
                                        double base, long long period, long long pos_offset) {
    const int half = n_rot / 2;
    const long long n = rows * heads * half;
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < n;
         t += (long long)gridDim.x * blockDim.x) {
        const int i = (int)(t % half);
        const long long rh = t / half;
        const long long r = rh / heads;
        const int h = (int)(rh % heads);
        const double pos = (double)(pos_offset + r % period);
        const double inv_freq = pow(base, -(2.0 * i) / (double)n_rot);
        double s, c;
        sincos(pos * inv_freq, &s, &c);
        float* head = x + (size_t)r * heads * dh + (size_t)h * dh;
        const double a = head[i], b = head[i + half];
        head[i] = (float)(a * c - b * s);
        head[i + half] = (float)(b * c + a * s);
    }
}

extern "C" __global__ void xl_sinusoid(float* pe, int count, int d, long long lo, double scale) {
    const long long n = (long long)count * (d / 2);
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < n;
         t += (long long)gridDim.x * blockDim.x) {
        const int i = (int)(t % (d / 2));
        const long long j = t / (d / 2);
        const double p = (double)(lo + j);
        const double freq = pow(10000.0, -(2.0 * i) / (double)d);
        double s, c;
        sincos(p * freq, &s, &c);
        float* row = pe + (size_t)j * d;
        row[2 * i] = (float)((double)(float)s * scale);
        row[2 * i + 1] = (float)((double)(float)c * scale);
    }
}
