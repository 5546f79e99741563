//! Process allocator tuning for inference.
//!
//! A forward pass allocates and frees the same large activation buffers op after op (a
//! `[batch*seq, d_ff]` hidden layer is megabytes). glibc serves every block over its mmap
//! threshold (at most 32 MiB, adjusted at run time) with a fresh `mmap` and returns it with
//! `munmap` on free, so each op pays page faults, zeroing by the kernel and TLB shootdowns
//! across threads: about a tenth of a `c4-47m` batch 8 pass measured here (`perf`: page
//! faults, `clear_page`, `smp_call_function_many`). [`tune_allocator`] keeps such blocks in
//! the heap instead, where the next op reuses them.

/// Serves large allocations from the heap and keeps freed memory for reuse (glibc:
/// `M_MMAP_THRESHOLD` 1 GiB, `M_TRIM_THRESHOLD` 2 GiB). Process-wide, so it is the
/// application's choice: the `switchhead` binary calls it at startup; an embedding
/// application may call it once before its first session. Peak resident memory is
/// unchanged (the same buffers are live at the peak); memory freed after the peak stays
/// with the process. Returns whether the allocator took the settings (false off glibc).
pub fn tune_allocator() -> bool {
    tune()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune() -> bool {
    // SAFETY: mallopt only changes allocator parameters; it is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune() -> bool {
    false
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_takes_the_settings() {
        assert!(super::tune_allocator());
        // and allocation still works, large and small
        let big = vec![1u8; 64 << 20];
        assert_eq!(big.iter().map(|&b| b as usize).sum::<usize>(), 64 << 20);
    }
}
