//! switchhead-kernels: CPU kernels and CUDA kernel sources (runtime and CUDA issues).
