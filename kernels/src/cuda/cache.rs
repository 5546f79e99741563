//! The on-disk PTX cache and the lookup order.
//!
//! A module's PTX lives at `<dir>/<name>-<arch>-<key>.ptx`, key = [`cache_key`] of (source,
//! architecture, options): any change to one of them is a different file, so a stale entry is
//! never used. [`KernelCache::get_or_compile`] tries, in order:
//! 1. the cache file (hit);
//! 2. the compiler, if there is one, writing the result atomically (temp file + rename; a
//!    read-only cache still returns the PTX);
//! 3. with no compiler, prebuilt PTX beside the cache: `<dir>/<name>.ptx` (the driver JITs
//!    PTX for its own architecture, so any PTX at or below the device's works);
//! 4. else [`CudaKernelError::NoPtx`] naming every path looked at.
//!
//! The directory is `$SWITCHHEAD_KERNEL_CACHE`, else `$XDG_CACHE_HOME/switchhead/kernels`,
//! else `$HOME/.cache/switchhead/kernels`, else the temp dir's `switchhead-kernels`.

use std::path::{Path, PathBuf};

use super::CudaKernelError;

/// Environment variable that overrides the cache directory.
pub const CACHE_ENV: &str = "SWITCHHEAD_KERNEL_CACHE";

/// Bumped when the key's composition changes.
const KEY_VERSION: &str = "switchhead-ptx-v1";

/// What to compile: a module's full source for one architecture with these options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileRequest<'a> {
    /// Module name (file stem).
    pub name: &'a str,
    /// Full source text (prelude included).
    pub source: &'a str,
    /// Virtual architecture, e.g. `compute_90`.
    pub arch: &'a str,
    /// NVRTC options other than the architecture.
    pub options: &'a [String],
}

/// The options every module is compiled with.
pub fn default_options() -> Vec<String> {
    vec!["--std=c++17".into()]
}

/// Something that turns a request into PTX text: NVRTC, or a fake in tests.
pub trait PtxCompiler {
    /// Compiles; `Err` carries the compiler's log.
    fn compile(&self, req: &CompileRequest<'_>) -> Result<String, CudaKernelError>;
}

impl<F> PtxCompiler for F
where
    F: Fn(&CompileRequest<'_>) -> Result<String, CudaKernelError>,
{
    fn compile(&self, req: &CompileRequest<'_>) -> Result<String, CudaKernelError> {
        self(req)
    }
}

/// Where a module's PTX came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PtxOrigin {
    /// Read from the cache.
    Cached(PathBuf),
    /// Compiled now; `stored` is the cache file, or `None` if it could not be written.
    Compiled { stored: Option<PathBuf> },
    /// Prebuilt PTX found beside the cache (no compiler).
    Prebuilt(PathBuf),
}

/// A module's PTX text and its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ptx {
    /// PTX assembly.
    pub text: String,
    /// Where it came from.
    pub origin: PtxOrigin,
}

/// 128-bit hex key of (source, arch, options): two FNV-1a 64 hashes with different offset
/// bases over length-prefixed fields (stable across Rust versions, unlike `DefaultHasher`).
pub fn cache_key(req: &CompileRequest<'_>) -> String {
    let mut fields: Vec<&str> = vec![KEY_VERSION, req.source, req.arch];
    fields.extend(req.options.iter().map(String::as_str));
    let a = fnv1a(0xcbf2_9ce4_8422_2325, &fields);
    let b = fnv1a(0x6c62_272e_07bb_0142, &fields);
    format!("{a:016x}{b:016x}")
}

fn fnv1a(basis: u64, fields: &[&str]) -> u64 {
    let mut h = basis;
    for f in fields {
        let len = (f.len() as u64).to_le_bytes();
        for &byte in len.iter().chain(f.as_bytes()) {
            h ^= byte as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// A PTX cache directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelCache {
    dir: PathBuf,
}

impl KernelCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        KernelCache { dir: dir.into() }
    }

    /// The cache named by the environment (module docs).
    pub fn from_env() -> Self {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let dir = var(CACHE_ENV)
            .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("switchhead/kernels")))
            .or_else(|| var("HOME").map(|d| d.join(".cache/switchhead/kernels")))
            .unwrap_or_else(|| std::env::temp_dir().join("switchhead-kernels"));
        KernelCache::new(dir)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cache file of a request.
    pub fn path_for(&self, req: &CompileRequest<'_>) -> PathBuf {
        self.dir
            .join(format!("{}-{}-{}.ptx", req.name, req.arch, cache_key(req)))
    }

    /// Prebuilt PTX for a module, used only without a compiler.
    pub fn prebuilt_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.ptx"))
    }

    /// The module's PTX by the lookup order in the module docs.
    pub fn get_or_compile(
        &self,
        req: &CompileRequest<'_>,
        compiler: Result<&dyn PtxCompiler, &CudaKernelError>,
    ) -> Result<Ptx, CudaKernelError> {
        let path = self.path_for(req);
        // An unreadable cache is a miss, never an error.
        if let Ok(Some(text)) = read_if_present(&path) {
            return Ok(Ptx {
                text,
                origin: PtxOrigin::Cached(path),
            });
        }
        let compiler = match compiler {
            Ok(c) => c,
            Err(why) => return self.prebuilt(req, path, why),
        };
        let text = compiler.compile(req)?;
        let stored = write_atomic(&path, &text).ok().map(|_| path);
        Ok(Ptx {
            text,
            origin: PtxOrigin::Compiled { stored },
        })
    }

    fn prebuilt(
        &self,
        req: &CompileRequest<'_>,
        cached: PathBuf,
        why: &CudaKernelError,
    ) -> Result<Ptx, CudaKernelError> {
        let prebuilt = self.prebuilt_path(req.name);
        match read_if_present(&prebuilt)? {
            Some(text) => Ok(Ptx {
                text,
                origin: PtxOrigin::Prebuilt(prebuilt),
            }),
            None => Err(CudaKernelError::NoPtx {
                name: req.name.into(),
                arch: req.arch.into(),
                why: why.to_string(),
                looked: vec![cached, prebuilt],
            }),
        }
    }
}

fn read_if_present(path: &Path) -> Result<Option<String>, CudaKernelError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(source) => Err(CudaKernelError::Io {
            path: path.into(),
            source,
        }),
    }
}

/// Writes via a temp file in the same directory and renames: readers never see a partial file.
fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("ptx"),
        std::process::id()
    ));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
