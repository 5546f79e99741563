use std::cell::Cell;

use super::*;

fn req<'a>(source: &'a str, arch: &'a str, options: &'a [String]) -> CompileRequest<'a> {
    CompileRequest {
        name: "mod",
        source,
        arch,
        options,
    }
}

/// A fresh path under the system temp dir, removed (file or tree) when dropped.
struct TempPath(PathBuf);

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(&self.0);
    }
}

fn temp_dir(tag: &str) -> TempPath {
    let d = std::env::temp_dir().join(format!("sh-kcache-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::remove_file(&d);
    TempPath(d)
}

/// A fake compiler that counts its calls and returns a PTX-looking string.
fn counting(
    calls: &Cell<u32>,
) -> impl Fn(&CompileRequest<'_>) -> Result<String, CudaKernelError> + '_ {
    move |r| {
        calls.set(calls.get() + 1);
        Ok(format!("// ptx of {} for {}\n", r.name, r.arch))
    }
}

#[test]
fn key_depends_on_source_arch_and_options_only() {
    let o1 = vec!["--std=c++17".to_string()];
    let o2 = vec!["--std=c++17".to_string(), "--use_fast_math".to_string()];
    let base = cache_key(&req("a", "compute_90", &o1));
    assert_eq!(base.len(), 32);
    assert_eq!(base, cache_key(&req("a", "compute_90", &o1)));
    assert_ne!(base, cache_key(&req("b", "compute_90", &o1)));
    assert_ne!(base, cache_key(&req("a", "compute_80", &o1)));
    assert_ne!(base, cache_key(&req("a", "compute_90", &o2)));
    let renamed = CompileRequest {
        name: "other",
        ..req("a", "compute_90", &o1)
    };
    assert_eq!(
        base,
        cache_key(&renamed),
        "the name is in the file name, not the key"
    );
}

#[test]
fn key_fields_are_length_prefixed() {
    let a = vec!["xy".to_string()];
    let b = vec!["x".to_string(), "y".to_string()];
    assert_ne!(cache_key(&req("s", "c", &a)), cache_key(&req("s", "c", &b)));
}

#[test]
fn miss_compiles_and_stores_then_hit_reads_without_compiling() {
    let dir = temp_dir("hit");
    let cache = KernelCache::new(dir.0.clone());
    let calls = Cell::new(0);
    let fake = counting(&calls);
    let opts = default_options();
    let r = req("src", "compute_90", &opts);
    let first = cache.get_or_compile(&r, Ok(&fake)).unwrap();
    assert_eq!(calls.get(), 1);
    assert_eq!(
        first.origin,
        PtxOrigin::Compiled {
            stored: Some(cache.path_for(&r))
        }
    );
    let second = cache.get_or_compile(&r, Ok(&fake)).unwrap();
    assert_eq!(calls.get(), 1, "a hit must not compile");
    assert_eq!(second.origin, PtxOrigin::Cached(cache.path_for(&r)));
    assert_eq!(first.text, second.text);
    let other_arch = req("src", "compute_80", &opts);
    cache.get_or_compile(&other_arch, Ok(&fake)).unwrap();
    assert_eq!(calls.get(), 2, "another architecture is another entry");
}

#[test]
fn compile_errors_pass_through_and_store_nothing() {
    let dir = temp_dir("err");
    let cache = KernelCache::new(dir.0.clone());
    let failing = |r: &CompileRequest<'_>| -> Result<String, CudaKernelError> {
        Err(CudaKernelError::Compile {
            name: r.name.into(),
            arch: r.arch.into(),
            log: "bad".into(),
        })
    };
    let opts = default_options();
    let r = req("src", "compute_90", &opts);
    let err = cache.get_or_compile(&r, Ok(&failing)).unwrap_err();
    assert!(matches!(err, CudaKernelError::Compile { .. }), "{err}");
    assert!(!cache.path_for(&r).exists());
}

#[test]
fn without_a_compiler_prebuilt_ptx_is_used_else_a_typed_error() {
    let dir = temp_dir("pre");
    let cache = KernelCache::new(dir.0.clone());
    let why = CudaKernelError::NvrtcUnavailable {
        reason: "libnvrtc not found".into(),
    };
    let opts = default_options();
    let r = req("src", "compute_90", &opts);
    match cache.get_or_compile(&r, Err(&why)).unwrap_err() {
        CudaKernelError::NoPtx { looked, why, .. } => {
            assert_eq!(looked, vec![cache.path_for(&r), cache.prebuilt_path("mod")]);
            assert!(why.contains("libnvrtc not found"));
        }
        other => panic!("{other}"),
    }
    std::fs::create_dir_all(cache.dir()).unwrap();
    std::fs::write(cache.prebuilt_path("mod"), "// prebuilt").unwrap();
    let ptx = cache.get_or_compile(&r, Err(&why)).unwrap();
    assert_eq!(ptx.origin, PtxOrigin::Prebuilt(cache.prebuilt_path("mod")));
    assert_eq!(ptx.text, "// prebuilt");
}

#[test]
fn a_cached_entry_wins_over_prebuilt_without_a_compiler() {
    let dir = temp_dir("both");
    let cache = KernelCache::new(dir.0.clone());
    let calls = Cell::new(0);
    let opts = default_options();
    let r = req("src", "compute_90", &opts);
    cache.get_or_compile(&r, Ok(&counting(&calls))).unwrap();
    std::fs::write(cache.prebuilt_path("mod"), "// prebuilt").unwrap();
    let why = CudaKernelError::NvrtcUnavailable {
        reason: "gone".into(),
    };
    let ptx = cache.get_or_compile(&r, Err(&why)).unwrap();
    assert!(matches!(ptx.origin, PtxOrigin::Cached(_)));
}

#[test]
fn an_unwritable_cache_still_returns_the_ptx() {
    let file = temp_dir("ro");
    std::fs::write(&file.0, "not a directory").unwrap();
    let cache = KernelCache::new(file.0.join("sub"));
    let calls = Cell::new(0);
    let opts = default_options();
    let ptx = cache
        .get_or_compile(&req("src", "compute_90", &opts), Ok(&counting(&calls)))
        .unwrap();
    assert_eq!(ptx.origin, PtxOrigin::Compiled { stored: None });
}
