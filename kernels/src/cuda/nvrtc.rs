//! NVRTC through cudarc (dynamic loading): probed before first use, never a panic.

use std::panic::{AssertUnwindSafe, catch_unwind};

use cudarc::nvrtc::{CompileError, CompileOptions, compile_ptx_with_opts};

use super::{CompileRequest, CudaKernelError, PtxCompiler};

/// The NVRTC compiler, once libnvrtc was found loadable.
#[derive(Debug, Clone, Copy)]
pub struct Nvrtc {
    _probed: (),
}

impl Nvrtc {
    /// Probes libnvrtc (cudarc's library names, through the dynamic loader's search path).
    pub fn load() -> Result<Nvrtc, CudaKernelError> {
        // SAFETY: only tries dlopen on cudarc's candidate names.
        let present = catch_unwind(|| unsafe { cudarc::nvrtc::sys::is_culib_present() });
        match present {
            Ok(true) => Ok(Nvrtc { _probed: () }),
            Ok(false) => Err(CudaKernelError::NvrtcUnavailable {
                reason: "libnvrtc not found (put its directory on LD_LIBRARY_PATH)".into(),
            }),
            Err(_) => Err(CudaKernelError::NvrtcUnavailable {
                reason: "probing libnvrtc panicked".into(),
            }),
        }
    }
}

impl PtxCompiler for Nvrtc {
    fn compile(&self, req: &CompileRequest<'_>) -> Result<String, CudaKernelError> {
        let mut options = req.options.to_vec();
        options.push(format!("--gpu-architecture={}", req.arch));
        let opts = CompileOptions {
            options,
            name: Some(format!("{}.cu", req.name)),
            ..Default::default()
        };
        let compiled = catch_unwind(AssertUnwindSafe(|| compile_ptx_with_opts(req.source, opts)));
        let fail = |log: String| CudaKernelError::Compile {
            name: req.name.into(),
            arch: req.arch.into(),
            log,
        };
        match compiled {
            Ok(Ok(ptx)) => Ok(ptx.to_src()),
            Ok(Err(CompileError::CompileError { log, .. })) => {
                Err(fail(log.to_string_lossy().into_owned()))
            }
            Ok(Err(e)) => Err(fail(format!("{e:?}"))),
            Err(_) => Err(fail("NVRTC panicked (library missing a symbol?)".into())),
        }
    }
}
