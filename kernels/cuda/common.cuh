// switchhead GPU kernels: helpers shared by every source, written in the portable vocabulary
// of the dialect preludes (prelude_cuda.h for NVRTC, prelude_opencl.h for OpenCL C 1.2), which
// switchhead_kernels::gpu::sources prepends with this file (no #include, no headers).
//
// Conventions (mirroring kernels/src/*.rs and SPEC.md):
// - Activations are f32, row-major; a "row" is one token (row = b*T + t).
// - Weights are f32 or bf16 (raw bits in a ushort), passed as an untyped pointer with an
//   int `wtype` (0 f32, 1 bf16) read through load_w; every product accumulates in f32.
// - Sizes are int or i64 (the launchers check that they fit); element offsets are i64.
// - Local arrays are declared at kernel scope (OpenCL C requires it) and passed to helpers.

#define SH_NEG_INF sh_as_float(0xff800000u)

DEVICE_FN float bf16_to_f32(bf16 x) { return sh_as_float(((u32)x) << 16); }

// Round to nearest even, NaN kept quiet (as torch's float -> bfloat16).
DEVICE_FN bf16 f32_to_bf16(float f) {
    u32 u = sh_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16)(u >> 16);
}

// Element i of a weight of type wtype (0 f32, 1 bf16).
DEVICE_FN float load_w(GLOBAL_MEM const void* w, i64 i, int wtype) {
    return wtype ? bf16_to_f32(((GLOBAL_MEM const bf16*)w)[i]) : ((GLOBAL_MEM const float*)w)[i];
}

// Sigmoid in f64, rounded once: the CPU kernels' gates (switchhead_ops::sigmoid) bit for bit
// up to exp's last ulp, so expert selections agree wherever the f32 logits do.
DEVICE_FN float sigmoid_exact(float x) { return (float)(1.0 / (1.0 + sh_exp_f64(-(double)x))); }
