//! A PyTorch `.pth` checkpoint (zip of pickle + storages), imported with rope-pth's config.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use std::sync::Once;
use switchhead_compiler::import::{LoadOptions, load_model};

fuzz_target!(|data: &[u8]| {
    static CONFIG: Once = Once::new();
    CONFIG.call_once(|| {
        let config = std::fs::read(common::testdata().join("models/rope-pth/config.json"));
        common::write("config.json", &config.expect("rope-pth config.json"));
    });
    let path = common::write("model.pth", data);
    let _ = load_model(&path, &LoadOptions::default());
});
