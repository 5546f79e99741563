//! Emits a model as ONNX: `emit_onnx MODEL OUT.onnx [--decompose] [--experts dense|gather]
//! [--kv-cache] [--dtype f32|f16|bf16] [--external-data]` (the last forces initializers into
//! `OUT.onnx.data`, for testing; `--kv-cache` is for RoPE models only).

use std::path::Path;

use anyhow::{Context, bail};
use switchhead_compiler::import::{LoadOptions, load_model};
use switchhead_compiler::ir::lower;
use switchhead_compiler::onnx::{
    EmitOptions, ExpertForm, WeightDType, emit, write, write_with_limit,
};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = EmitOptions::default();
    let mut paths = Vec::new();
    let mut external = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--decompose" => opts.decompose = true,
            "--kv-cache" => opts.kv_cache = true,
            "--external-data" => external = true,
            "--experts" => {
                opts.experts = match it.next().map(String::as_str) {
                    Some("dense") => ExpertForm::Dense,
                    Some("gather") => ExpertForm::Gather,
                    other => bail!("--experts takes dense|gather, got {other:?}"),
                }
            }
            "--dtype" => {
                opts.dtype = match it.next().map(String::as_str) {
                    Some("f32") => WeightDType::F32,
                    Some("f16") => WeightDType::F16,
                    Some("bf16") => WeightDType::BF16,
                    other => bail!("--dtype takes f32|f16|bf16, got {other:?}"),
                }
            }
            _ => paths.push(a.clone()),
        }
    }
    let [model, out] = paths.as_slice() else {
        bail!(
            "usage: emit_onnx MODEL OUT.onnx [--decompose] [--experts dense|gather] [--kv-cache] [--dtype f32|f16|bf16] [--external-data]"
        )
    };
    let model = load_model(Path::new(model), &LoadOptions::default())
        .with_context(|| format!("loading {model}"))?;
    opts.chunk_size = model.config.chunk_size;
    let graph = lower(&model);
    let proto = emit(&graph, &model.weights, &opts)?;
    let written = match external {
        true => write_with_limit(proto, Path::new(out), 0),
        false => write(proto, Path::new(out)),
    };
    written.with_context(|| format!("writing {out}"))?;
    Ok(())
}
