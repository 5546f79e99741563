//! Every CUDA kernel source compiles to PTX for sm_90 through our compile path (NVRTC + the
//! cache), and the PTX defines every entry point the launchers load. Needs libnvrtc on the
//! loader path (e.g. the `nvidia-cuda-nvrtc-cu12` wheel's `lib/` on LD_LIBRARY_PATH); skips
//! with a printed reason where it is absent. No GPU needed.
#![cfg(feature = "cuda")]

use switchhead_kernels::cuda::{
    CompileRequest, KernelCache, Nvrtc, PtxCompiler, PtxOrigin, SOURCES, default_options,
};

const ARCH: &str = "compute_90";

#[test]
fn every_kernel_source_compiles_for_sm_90() {
    let nvrtc = match Nvrtc::load() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("SKIPPED every_kernel_source_compiles_for_sm_90: {e}");
            return;
        }
    };
    let dir = std::env::temp_dir().join(format!("sh-nvrtc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cache = KernelCache::new(&dir);
    let options = default_options();
    for s in SOURCES {
        let source = s.full_source();
        let req = CompileRequest {
            name: s.name,
            source: &source,
            arch: ARCH,
            options: &options,
        };
        let ptx = cache
            .get_or_compile(&req, Ok(&nvrtc as &dyn PtxCompiler))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(ptx.origin, PtxOrigin::Compiled { stored: Some(_) }),
            "{:?}",
            ptx.origin
        );
        assert!(
            ptx.text.contains(".target sm_90"),
            "{}: no sm_90 target",
            s.name
        );
        for entry in s.entry_points {
            assert!(
                ptx.text.contains(&format!(".entry {entry}(")),
                "{}: PTX has no entry {entry}",
                s.name
            );
        }
        let again = cache
            .get_or_compile(&req, Ok(&nvrtc as &dyn PtxCompiler))
            .unwrap();
        assert!(matches!(again.origin, PtxOrigin::Cached(_)));
        eprintln!(
            "{}: {} bytes of PTX, entries {:?}",
            s.name,
            ptx.text.len(),
            s.entry_points
        );
        // scripts/gpu-bundle.sh ships these as the prebuilt PTX of a host without NVRTC.
        if let Some(out) = std::env::var_os("SWITCHHEAD_PTX_OUT") {
            let out = std::path::PathBuf::from(out);
            std::fs::create_dir_all(&out).unwrap();
            std::fs::write(out.join(format!("{}.ptx", s.name)), &ptx.text).unwrap();
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_broken_source_reports_the_nvrtc_log() {
    let Ok(nvrtc) = Nvrtc::load() else {
        eprintln!("SKIPPED a_broken_source_reports_the_nvrtc_log: libnvrtc not found");
        return;
    };
    let options = default_options();
    let req = CompileRequest {
        name: "broken",
        source: "extern \"C\" __global__ void k() { undefined_thing(); }",
        arch: ARCH,
        options: &options,
    };
    let err = nvrtc.compile(&req).unwrap_err().to_string();
    assert!(
        err.contains("broken.cu") && err.contains("undefined_thing"),
        "{err}"
    );
}
