//! Inputs found by the fuzz targets (`fuzz/`), and files that claim huge dimensions: each is
//! refused with an error naming the file and the tensor, before anything that size is
//! allocated, never a panic.

use std::path::{Path, PathBuf};

use switchhead_compiler::ImportError;
use switchhead_compiler::import::{LoadOptions, load_model};
use switchhead_compiler::tensor_io::{IoError, read_token_chunks};

fn regressions() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/fuzz-regressions")
}

/// A fresh directory holding `name` with `bytes` and the gated model's config.json.
fn beside_gated_config(tag: &str, name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchhead-fuzzreg-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/models/gated/config.json");
    std::fs::copy(config, dir.join("config.json")).expect("copy config.json");
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write input");
    path
}

/// A safetensors file whose header declares `tensor` with `shape` and `data` as its bytes.
fn safetensors_claiming(tensor: &str, dtype: &str, shape: &[u64], data: &[u8]) -> Vec<u8> {
    let header = format!(
        r#"{{"{tensor}":{{"dtype":"{dtype}","shape":{shape:?},"data_offsets":[0,{}]}}}}"#,
        data.len()
    );
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn safetensors_claiming_a_2_40_by_2_40_tensor_is_refused() {
    let bytes = safetensors_claiming("embedding.weight", "F32", &[1 << 40, 1 << 40], &[0; 16]);
    let path = beside_gated_config("st-huge", "model.safetensors", &bytes);
    let err = load_model(&path, &LoadOptions::default()).expect_err("a huge claimed shape");
    assert!(matches!(err, ImportError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

#[test]
fn token_file_claiming_a_huge_shape_is_refused() {
    let bytes = safetensors_claiming("tokens", "I64", &[1 << 40, 1 << 40], &[0; 16]);
    let path = beside_gated_config("tok-huge", "tokens.safetensors", &bytes);
    let err = read_token_chunks(&path).expect_err("a huge claimed shape");
    assert!(matches!(err, IoError::Format { .. }), "{err:?}");
    assert!(err.to_string().contains("tokens.safetensors"), "{err}");
}

/// `.pth` storages are read by candle into a buffer sized by the pickle's claimed shape; a
/// 796-byte file claiming a [2^20, 2^20] f32 tensor (4 TiB) made it allocate before reading.
#[test]
fn pth_claiming_a_4_tib_tensor_is_refused_before_allocating() {
    let bytes = std::fs::read(regressions().join("pth-claims-4tib.pth")).expect("regression file");
    let path = beside_gated_config("pth-huge", "model.pth", &bytes);
    let err = load_model(&path, &LoadOptions::default()).expect_err("a huge claimed shape");
    let text = err.to_string();
    assert!(matches!(err, ImportError::Corrupt { .. }), "{err:?}");
    assert!(
        text.contains("embedding.weight") && text.contains("needs more bytes"),
        "{text}"
    );
}

/// Found by `pth_import`: a 778-byte `.pth` whose pickle has a string opcode claiming
/// 0xFFFF0001 bytes; candle's pickle reader (`PthTensors::new`) allocates that much before
/// reading. Not fixed yet (it needs a length check inside candle's reader, or our own bound
/// on `data.pkl` before it): ignored until then.
#[test]
#[ignore = "candle's pickle reader allocates a claimed 4 GiB string before reading (not fixed)"]
fn pth_pickle_claiming_a_4_gib_string_is_refused_before_allocating() {
    let name = "pth-pickle-claims-4gib-string.pth";
    let bytes = std::fs::read(regressions().join(name)).expect("regression file");
    let path = beside_gated_config("pth-pkl", "model.pth", &bytes);
    let err = load_model(&path, &LoadOptions::default()).expect_err("a corrupt pickle");
    assert!(matches!(err, ImportError::Corrupt { .. }), "{err:?}");
}
