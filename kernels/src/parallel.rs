//! Parallel maps on persistent worker pools (rayon), one pool per thread count, created on
//! first use and kept for the process: a decode step runs dozens of parallel regions, and
//! starting threads for each cost more than the work at small sizes.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use rayon::prelude::*;

/// The pool of `threads` workers (None when one cannot be started: run inline).
fn pool(threads: usize) -> Option<&'static rayon::ThreadPool> {
    static POOLS: OnceLock<Mutex<HashMap<usize, &'static rayon::ThreadPool>>> = OnceLock::new();
    let pools = POOLS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut pools = pools.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = pools.get(&threads) {
        return Some(*p);
    }
    let built = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("switchhead-kernel-{i}"))
        .build()
        .ok()?;
    let leaked: &'static rayon::ThreadPool = Box::leak(Box::new(built));
    pools.insert(threads, leaked);
    Some(leaked)
}

/// `(0..n).map(f)` computed on up to `threads` workers, results in order.
pub(crate) fn par_map<T: Send>(threads: usize, n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = threads.clamp(1, n.max(1));
    match pool(threads).filter(|_| threads > 1) {
        Some(p) => p.install(|| (0..n).into_par_iter().map(&f).collect()),
        None => (0..n).map(f).collect(),
    }
}

/// Splits `out` (`rows` rows of `width`) into up to `threads` contiguous row blocks and calls
/// `f(first_row, block)` for each in parallel (inline when one block suffices).
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
    let Some(p) = pool(blocks).filter(|_| blocks > 1) else {
        return f(0, out);
    };
    let per = rows.div_ceil(blocks);
    p.install(|| {
        out.par_chunks_mut(per * width.max(1))
            .enumerate()
            .for_each(|(i, block)| f(i * per, block));
    });
}
