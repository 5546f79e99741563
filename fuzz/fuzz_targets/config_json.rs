//! `config.json` beside the gated model's weights (a link to testdata, not a copy).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use switchhead_compiler::import::{LoadOptions, load_model};

fuzz_target!(|data: &[u8]| {
    static MODEL: OnceLock<std::path::PathBuf> = OnceLock::new();
    let model = MODEL.get_or_init(|| {
        let target = common::testdata().join("models/gated/model.safetensors");
        let link = common::scratch().join("model.safetensors");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(target, &link).expect("link the gated model");
        link
    });
    common::write("config.json", data);
    let _ = load_model(model, &LoadOptions::default());
});
