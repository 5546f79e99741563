// Sigmoid top-k routing and the dispatch lists, all on the device (SPEC.md section 1 router).
//
// 1. route_topk: logits [n, groups*experts] (f32, from a cuBLAS product x @ S^T) ->
//    gate = sigmoid(logit); per (row, group) the k largest of its E gates, descending, ties to
//    the lower expert index (as kernels/src/routing.rs); idx = flat expert id g*E + e, gate the
//    raw sigmoid (not renormalised). Slot s = (row*groups + g)*k + j. Also counts[e] += 1 per
//    chosen slot (counts zeroed before). One thread per (row, group); E <= 64.
// 2. expert_offsets: exclusive scan of counts -> offsets[n_experts + 1], cursor = offsets.
//    One block of 1024 threads (n_experts <= 1024 checked on the host).
// 3. scatter_slots: slots[cursor[idx[s]]++] = s: the counting sort's placement. Within one
//    expert the order is whatever the atomics give; nothing downstream depends on it (every
//    product row is computed the same way wherever it sits in a tile).
// No host round trip: the grouped GEMM reads offsets/slots directly.

extern "C" __global__ void route_topk(const float* logits, long long n, int groups, int experts,
                                      int k, int* idx, float* gate, int* counts) {
    const long long total = n * groups;
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total;
         t += (long long)gridDim.x * blockDim.x) {
        const long long row = t / groups;
        const int g = (int)(t % groups);
        const float* l = logits + (size_t)row * groups * experts + (size_t)g * experts;
        unsigned long long taken = 0ull;
        for (int j = 0; j < k; ++j) {
            int best = -1;
            float best_v = 0.0f;
            for (int e = 0; e < experts; ++e) {
                if (taken & (1ull << e)) continue;
                const float v = sigmoid_exact(l[e]);
                if (best < 0 || v > best_v) {
                    best = e;
                    best_v = v;
                }
            }
            taken |= 1ull << best;
            const long long slot = t * k + j;
            const int flat = g * experts + best;
            idx[slot] = flat;
            gate[slot] = best_v;
            atomicAdd(&counts[flat], 1);
        }
    }
}

extern "C" __global__ void expert_offsets(const int* counts, int n_experts, int* offsets,
                                          int* cursor) {
    __shared__ int partial[1024];
    const int e = threadIdx.x;
    partial[e] = e < n_experts ? counts[e] : 0;
    __syncthreads();
    // Hillis-Steele inclusive scan.
    for (int off = 1; off < 1024; off <<= 1) {
        const int add = e >= off ? partial[e - off] : 0;
        __syncthreads();
        partial[e] += add;
        __syncthreads();
    }
    if (e < n_experts) {
        const int excl = partial[e] - counts[e];
        offsets[e] = excl;
        cursor[e] = excl;
    }
    if (e == 0) offsets[n_experts] = partial[1023];
}

extern "C" __global__ void scatter_slots(const int* idx, long long n_slots, int* cursor,
                                         int* slots) {
    for (long long s = blockIdx.x * (long long)blockDim.x + threadIdx.x; s < n_slots;
         s += (long long)gridDim.x * blockDim.x) {
        const int at = atomicAdd(&cursor[idx[s]], 1);
        slots[at] = (int)s;
    }
}
