//! Opening a session on what the user named: exactly `switchhead run`'s way (the CLI's
//! `open`): a compiled file (`.onnx`, `.shplan`) loads directly; a checkpoint is compiled in
//! memory to a temporary file, removed with the session (a plan when a device executor will
//! run it, else ONNX with the KV cache, so the session both computes logits and decodes).

use std::path::Path;

use pyo3::PyErr;
use switchhead_cli::model_arg::ModelArg;
use switchhead_cli::open::{OpenOptions, Opened, open as cli_open};
use switchhead_runtime::BackendKind;

use crate::errors::from_anyhow;

/// Opens `path` (see the module docs); errors are the CLI's.
pub fn open(path: &Path, threads: Option<usize>, backend: BackendKind) -> Result<Opened, PyErr> {
    let model = ModelArg {
        model: path.to_path_buf(),
        set: Vec::new(),
    };
    let opts = OpenOptions {
        threads,
        kv_cache: true,
        backend,
        ..Default::default()
    };
    cli_open(&model, opts).map_err(from_anyhow)
}
