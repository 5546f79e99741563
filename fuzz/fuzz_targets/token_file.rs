//! A token file (safetensors with `tokens` or `tokens0`, `tokens1`, ...).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use switchhead_compiler::tensor_io::read_token_chunks;

fuzz_target!(|data: &[u8]| {
    let path = common::write("tokens.safetensors", data);
    let _ = read_token_chunks(&path);
});
