//! A scoped parallel map over task indices (std threads, no pool).

/// `(0..n).map(f)` computed on up to `threads` scoped threads, results in order.
pub(crate) fn par_map<T: Send>(threads: usize, n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = threads.clamp(1, n.max(1));
    if threads == 1 {
        return (0..n).map(f).collect();
    }
    let f = &f;
    let mut parts: Vec<Vec<(usize, T)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|w| s.spawn(move || (w..n).step_by(threads).map(|i| (i, f(i))).collect()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut slots: Vec<Option<T>> = (0..n).map(|_| None).collect();
    for (i, v) in parts.iter_mut().flat_map(std::mem::take) {
        slots[i] = Some(v);
    }
    slots.into_iter().flatten().collect()
}

/// Splits `out` (`rows` rows of `width`) into up to `threads` contiguous row blocks and calls
/// `f(first_row, block)` for each on scoped threads (inline when one block suffices).
/// Blocks hold at least `min_rows` rows, so small problems stay on one thread.
pub(crate) fn par_rows(
    threads: usize,
    out: &mut [f32],
    width: usize,
    min_rows: usize,
    f: impl Fn(usize, &mut [f32]) + Sync,
) {
    let rows = out.len() / width.max(1);
    let blocks = threads.clamp(1, (rows / min_rows.max(1)).max(1));
    if blocks == 1 {
        return f(0, out);
    }
    let per = rows.div_ceil(blocks);
    let f = &f;
    std::thread::scope(|s| {
        for (i, block) in out.chunks_mut(per * width).enumerate() {
            s.spawn(move || f(i * per, block));
        }
    });
}
