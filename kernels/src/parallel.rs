//! Parallel maps on persistent worker pools (rayon): a decode step runs about a hundred
//! parallel regions, and starting threads for each cost more than the work.
//!
//! A thread that calls in gets its own pool at its first call, with itself as worker 0 and
//! `threads - 1` helpers: it runs its share of a region itself and takes back what no helper
//! has stolen, instead of handing the region to the pool and sleeping until it is done (8-12%
//! of a `c4-47m` decode step, in alternated runs). The pool ends with its thread. Calls
//! with another thread count, and calls from threads that are already rayon workers, use
//! shared pools (one per thread count), as all calls did before.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use rayon::prelude::*;

thread_local! {
    /// This thread's own pool and its thread count (None: it could not have one).
    static OWN: OnceCell<Option<(usize, rayon::ThreadPool)>> = const { OnceCell::new() };
}

/// Runs `f` with the pool for `threads` workers (None: run inline).
fn with_pool<R>(threads: usize, f: impl FnOnce(Option<&rayon::ThreadPool>) -> R) -> R {
    if threads <= 1 {
        return f(None);
    }
    // false also while the thread's locals are being torn down
    let has_own = OWN
        .try_with(|cell| {
            cell.get_or_init(|| own_pool(threads));
            own(cell, threads).is_some()
        })
        .unwrap_or(false);
    match has_own {
        true => OWN.with(|cell| f(own(cell, threads))),
        false => f(shared(threads)),
    }
}

/// The thread's own pool if it has `threads` workers.
fn own(
    cell: &OnceCell<Option<(usize, rayon::ThreadPool)>>,
    threads: usize,
) -> Option<&rayon::ThreadPool> {
    match cell.get() {
        Some(Some((t, p))) if *t == threads => Some(p),
        _ => None,
    }
}

/// A pool of `threads` workers with the calling thread as worker 0 (None where rayon refuses:
/// the thread is already a rayon worker, or a helper cannot be started).
fn own_pool(threads: usize) -> Option<(usize, rayon::ThreadPool)> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .use_current_thread()
        .thread_name(|i| format!("switchhead-kernel-{i}"))
        .build()
        .ok()?;
    Some((threads, pool))
}

/// The shared pool of `threads` workers (None when one cannot be started: run inline).
fn shared(threads: usize) -> Option<&'static rayon::ThreadPool> {
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
    with_pool(threads, |pool| match pool {
        Some(p) => p.install(|| (0..n).into_par_iter().map(&f).collect()),
        None => (0..n).map(f).collect(),
    })
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
    with_pool(blocks, |pool| {
        let Some(p) = pool else {
            return f(0, out);
        };
        let per = rows.div_ceil(blocks);
        p.install(|| {
            out.par_chunks_mut(per * width.max(1))
                .enumerate()
                .for_each(|(i, block)| f(i * per, block));
        });
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Results stay in order from several calling threads at once (each with its own pool),
    /// with another thread count from the same thread (a shared pool) and with maps nested
    /// inside a map (run on the pools' helpers, which cannot have pools of their own).
    #[test]
    fn maps_in_order_from_threads_counts_and_nesting() {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                std::thread::spawn(move || {
                    for threads in [2, 3, 2] {
                        let got = par_map(threads, 50, |i| {
                            par_map(2, 3, |j| i * 10 + j).iter().sum::<usize>() + t
                        });
                        let want: Vec<usize> = (0..50).map(|i| 30 * i + 3 + t).collect();
                        assert_eq!(got, want, "threads {threads}");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("a mapping thread panicked");
        }
    }

    /// Every row block is handed out once, with its first row.
    #[test]
    fn row_blocks_cover_every_row_once() {
        for threads in [1, 2, 3] {
            let mut out = vec![-1f32; 101 * 3];
            par_rows(threads, &mut out, 3, 10, |r0, block| {
                for (i, row) in block.chunks_mut(3).enumerate() {
                    row.iter_mut().for_each(|v| *v += 1.0 + (r0 + i) as f32);
                }
            });
            for (i, row) in out.chunks(3).enumerate() {
                assert!(
                    row.iter().all(|&v| v == i as f32),
                    "threads {threads} row {i}"
                );
            }
        }
    }
}
