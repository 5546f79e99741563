//! A `.safetensors` checkpoint, imported with the gated model's config.json beside it.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use std::sync::Once;
use switchhead_compiler::import::{LoadOptions, load_model};

fuzz_target!(|data: &[u8]| {
    static CONFIG: Once = Once::new();
    CONFIG.call_once(|| {
        let config = std::fs::read(common::testdata().join("models/gated/config.json"));
        common::write("config.json", &config.expect("gated config.json"));
    });
    let path = common::write("model.safetensors", data);
    let _ = load_model(&path, &LoadOptions::default());
});
