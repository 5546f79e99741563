//! How a session is set up.

/// Which backend runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendKind {
    /// The best available: CUDA when built, a device is present and the backend can run the
    /// model; else the CPU.
    #[default]
    Auto,
    /// tract on the CPU.
    Cpu,
    /// CUDA, or [`crate::RuntimeError::BackendUnavailable`] with the reason (not built with the
    /// `cuda` feature, no libcuda, no device, model not runnable there).
    Cuda,
}

/// Options of [`crate::Session::load`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionOptions {
    /// Worker threads for matrix products and our kernels; `None`: the available cores.
    /// The native kernels count the calling thread as one of them: a thread that runs a
    /// session gets its own `threads - 1` helper threads at its first call, which end with it.
    pub threads: Option<usize>,
    /// The backend.
    pub backend: BackendKind,
}

impl SessionOptions {
    /// The thread count to use (at least 1).
    pub fn resolved_threads(&self) -> usize {
        self.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1)
    }
}
