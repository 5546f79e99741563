//! Opt-in time per op type for the native executor: where a forward pass goes, e.g. how the
//! attention of a SwitchHead model compares with a dense baseline's. Off by default (one
//! relaxed atomic load per node); `switchhead bench --profile` turns it on.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static ON: AtomicBool = AtomicBool::new(false);
static TOTALS: Mutex<BTreeMap<&'static str, (u64, Duration)>> = Mutex::new(BTreeMap::new());

/// Starts (or stops) recording, and clears what was recorded.
pub fn enable(on: bool) {
    ON.store(on, Ordering::Relaxed);
    take();
}

/// Whether recording is on.
pub(crate) fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Adds one node's time to its op's total.
pub(crate) fn record(op: &'static str, took: Duration) {
    let mut totals = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    let entry = totals.entry(op).or_default();
    entry.0 += 1;
    entry.1 += took;
}

/// The totals so far, by op name: (op, nodes run, total time); clears them.
pub fn take() -> Vec<(&'static str, u64, Duration)> {
    let mut totals = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    std::mem::take(&mut *totals)
        .into_iter()
        .map(|(op, (n, t))| (op, n, t))
        .collect()
}
