//! Errors of the device layer: one line each, naming the API, the device or kernel, and what
//! was expected.

/// Why a device call failed.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// The API's runtime is missing, or it has no usable device.
    #[error("{api} is unavailable: {reason}")]
    Unavailable { api: &'static str, reason: String },
    /// A kernel source failed to build; `log` is the compiler's log on one line.
    #[error("{api}: kernel source {module} failed to build for {device}: {log}")]
    Build {
        api: &'static str,
        module: String,
        device: String,
        log: String,
    },
    /// The weights (or a buffer) do not fit the device's memory.
    #[error(
        "{api} device {device} has {available_mib} MiB of memory, but {what} needs {needed_mib} MiB"
    )]
    OutOfMemory {
        api: &'static str,
        device: String,
        what: String,
        needed_mib: u64,
        available_mib: u64,
    },
    /// A launch or call was given sizes the kernel cannot take.
    #[error("{kernel}: {reason}")]
    Shape { kernel: String, reason: String },
    /// The API reported an error for a call.
    #[error("{api}: {call}: {reason}")]
    Call {
        api: &'static str,
        call: String,
        reason: String,
    },
}

impl GpuError {
    /// A [`GpuError::Shape`] for `kernel`.
    pub fn shape(kernel: &str, reason: impl Into<String>) -> GpuError {
        GpuError::Shape {
            kernel: kernel.into(),
            reason: reason.into(),
        }
    }
}

/// A compiler log folded onto one line (at most `max` characters), for [`GpuError::Build`].
pub fn one_line_log(log: &str, max: usize) -> String {
    let folded: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut s = folded.join(" | ");
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str(" ...");
    }
    s
}

/// The message of a caught panic (the driver bindings panic where a library is missing).
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_fold_onto_one_line() {
        let log = "a.cl:3:1: error: bad\n  int x\n\n  ^\n";
        assert_eq!(one_line_log(log, 100), "a.cl:3:1: error: bad | int x | ^");
        assert_eq!(one_line_log("abcdef", 3), "abc ...");
    }
}
