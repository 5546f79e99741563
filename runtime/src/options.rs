//! How a session is set up.

/// Which backend runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendKind {
    /// The best available: CUDA when built, a device is present and the model is a plan;
    /// else an OpenCL GPU (never an OpenCL CPU device) likewise; else the CPU.
    #[default]
    Auto,
    /// The CPU: tract for ONNX files, the native executor for plans.
    Cpu,
    /// CUDA, or [`crate::RuntimeError::BackendUnavailable`] with the reason (not built with the
    /// `cuda` feature, no libcuda, no device, ...).
    Cuda,
    /// OpenCL on any device (a CPU one too: PoCL), or the reason it is unavailable.
    OpenCl,
}

impl BackendKind {
    /// True for the device executors (CUDA, OpenCL), which run plans.
    pub fn is_device(self) -> bool {
        matches!(self, BackendKind::Cuda | BackendKind::OpenCl)
    }
}

/// The element type of a device session's weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceDType {
    /// f32 weights.
    #[default]
    F32,
    /// bf16 matrices (embeddings, projections, experts, the output layer), f32 vectors;
    /// f32 accumulation everywhere.
    Bf16,
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
    /// Weight type on a device backend (the CPU backends take the file's).
    pub dtype: DeviceDType,
}

impl SessionOptions {
    /// The thread count to use (at least 1).
    pub fn resolved_threads(&self) -> usize {
        self.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1)
    }
}
