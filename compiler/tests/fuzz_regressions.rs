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

/// Loads the `.pth` regression input `name` beside the gated config; its error's text.
fn pth_refusal(name: &str) -> String {
    let bytes = std::fs::read(regressions().join(name)).expect("regression file");
    let path = beside_gated_config(name.trim_end_matches(".pth"), "model.pth", &bytes);
    let err = load_model(&path, &LoadOptions::default()).expect_err("a corrupt pickle");
    assert!(matches!(err, ImportError::Corrupt { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("model.pth") && text.contains("data.pkl"),
        "{text}"
    );
    text
}

/// Found by `pth_import`: a 778-byte `.pth` whose pickle has a string opcode claiming
/// 0xFFFF0001 bytes; candle's pickle reader (`PthTensors::new`) allocated that much before
/// reading. The pickle's lengths are now checked first.
#[test]
fn pth_pickle_claiming_a_4_gib_string_is_refused_before_allocating() {
    let text = pth_refusal("pth-pickle-claims-4gib-string.pth");
    assert!(
        text.contains("opcode 0x58 at offset 153") && text.contains("claims 4294901761 bytes"),
        "{text}"
    );
}

/// candle's reader copies a memo entry on every get: doubling it 48 times (339 bytes) would
/// build 2^48 objects.
#[test]
fn pth_pickle_doubling_a_memo_entry_is_refused_before_allocating() {
    let text = pth_refusal("pth-pickle-memo-doubling.pth");
    assert!(text.contains("builds over"), "{text}");
}

/// candle decodes a `LONG1` by shifting a byte in per byte: past 8 the shift overflows.
#[test]
fn pth_long1_of_9_bytes_is_refused() {
    let text = pth_refusal("pth-long1-of-9-bytes.pth");
    assert!(text.contains("LONG1 of 9 bytes"), "{text}");
}

/// candle takes `_rebuild_tensor_v2`'s 4th argument out of the tuple without checking its
/// length: a panic on a record with 3.
#[test]
fn pth_tensor_record_with_3_arguments_is_refused() {
    let text = pth_refusal("pth-record-with-3-arguments.pth");
    assert!(
        text.contains("tensor embedding.weight") && text.contains("fewer than 4 arguments"),
        "{text}"
    );
}

/// candle multiplies the storage offset, cast to `usize`, by the element size: -1 overflows.
#[test]
fn pth_negative_storage_offset_is_refused() {
    let text = pth_refusal("pth-storage-offset-negative.pth");
    assert!(text.contains("negative storage offset"), "{text}");
}
