//! A `.shplan` plan loaded on the native executor, then one small forward. The input's last
//! 8 bytes are replaced by the checksum of the rest (so mutations get past the CRC check).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use switchhead_ops::plan::TRAILER_LEN;
use switchhead_runtime::{BackendKind, Session, SessionOptions, TokenBatch};

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    if let Some(body) = bytes.len().checked_sub(TRAILER_LEN as usize) {
        let crc = u64::from(crc32fast::hash(&bytes[..body]));
        bytes[body..].copy_from_slice(&crc.to_le_bytes());
    }
    let path = common::write("model.shplan", &bytes);
    let options = SessionOptions {
        threads: Some(1),
        backend: BackendKind::Cpu,
        ..SessionOptions::default()
    };
    if let Ok(session) = Session::load(&path, options) {
        let _ = session.logits(&TokenBatch::single(vec![1, 2]));
    }
});
