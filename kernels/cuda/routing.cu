// Sigmoid top-k routing and the dispatch lists, all on the device (SPEC.md section 1 router).
//
// 1. route_topk: logits [n, groups*experts] (f32, from a plain product x @ S^T) ->
//    gate = sigmoid(logit); per (row, group) the k largest of its E gates, descending, ties to
//    the lower expert index (as kernels/src/routing.rs); idx = flat expert id g*E + e, gate the
//    raw sigmoid (not renormalised). Slot s = (row*groups + g)*k + j. Also counts[e] += 1 per
//    chosen slot (counts zeroed before). One thread per (row, group); E <= 64.
// 2. expert_offsets: exclusive scan of counts -> offsets[n_experts + 1], cursor = offsets.
//    One thread (n_experts is at most a few thousand: a serial scan is microseconds).
// 3. scatter_slots: slots[cursor[idx[s]]++] = s: the counting sort's placement. Within one
//    expert the order is whatever the atomics give; nothing downstream depends on it (every
//    product row is computed the same way wherever it sits in a tile).
// No host round trip: the grouped GEMM reads offsets and slots directly.

KERNEL void route_topk(GLOBAL_MEM const float* logits, i64 n, int groups, int experts, int k,
                       GLOBAL_MEM int* idx, GLOBAL_MEM float* gate, GLOBAL_MEM int* counts) {
    const i64 total = n * groups;
    for (i64 t = GID_0 * LDIM_0 + LID_0; t < total; t += GDIM_0 * LDIM_0) {
        const i64 row = t / groups;
        const int g = (int)(t % groups);
        GLOBAL_MEM const float* l = logits + (row * groups + g) * experts;
        unsigned long taken_lo = 0, taken_hi = 0;
        for (int j = 0; j < k; ++j) {
            int best = -1;
            float best_v = 0.0f;
            for (int e = 0; e < experts; ++e) {
                const unsigned long bit = 1ul << (e & 31);
                const int used = e < 32 ? (taken_lo & bit) != 0 : (taken_hi & bit) != 0;
                if (used) continue;
                const float v = sigmoid_exact(l[e]);
                if (best < 0 || v > best_v) {
                    best = e;
                    best_v = v;
                }
            }
            if (best < 32) taken_lo |= 1ul << best;
            else taken_hi |= 1ul << (best - 32);
            const i64 slot = t * k + j;
            const int flat = g * experts + best;
            idx[slot] = flat;
            gate[slot] = best_v;
            sh_atomic_add_i32(&counts[flat], 1);
        }
    }
}

KERNEL void expert_offsets(GLOBAL_MEM const int* counts, int n_experts, GLOBAL_MEM int* offsets,
                           GLOBAL_MEM int* cursor) {
    if (GID_0 != 0 || LID_0 != 0) return;
    int sum = 0;
    for (int e = 0; e < n_experts; ++e) {
        offsets[e] = sum;
        cursor[e] = sum;
        sum += counts[e];
    }
    offsets[n_experts] = sum;
}

KERNEL void scatter_slots(GLOBAL_MEM const int* idx, i64 n_slots, GLOBAL_MEM int* cursor,
                          GLOBAL_MEM int* slots) {
    for (i64 s = GID_0 * LDIM_0 + LID_0; s < n_slots; s += GDIM_0 * LDIM_0) {
        const int at = sh_atomic_add_i32(&cursor[idx[s]], 1);
        slots[at] = (int)s;
    }
}
