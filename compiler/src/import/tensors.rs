//! Importing a model from tensors already in memory (a training script's `state_dict`) and a
//! config given as JSON text, with the checks a checkpoint file gets: the same key layouts,
//! the same validation, the same errors, naming `source` where a file would be named.

use std::path::Path;

use serde_json::Value;
use switchhead_ops::Tensor;

use super::{config::validate_config, layout, validate};
use crate::config::Config;
use crate::error::ImportError;
use crate::model::{DType, Model, TensorInfo, Weights};

/// Builds and validates a [`Model`] from `tensors` (state_dict names, f32) and `config_json`
/// (a JSON object of `config.json`'s keys). `source` stands for the checkpoint in errors and
/// becomes [`Model::source`]; the σ-MoE statistics buffer is skipped as in a file.
pub fn load_tensors(
    source: &Path,
    tensors: impl IntoIterator<Item = (String, Tensor)>,
    config_json: &str,
) -> Result<Model, ImportError> {
    let mut weights = Weights::for_file(source.to_path_buf());
    for (name, t) in tensors {
        if layout::is_ignored(&name) {
            continue;
        }
        let info = TensorInfo {
            dtype: DType::F32,
            shape: t.shape().to_vec(),
        };
        weights.insert_owned(name.clone(), name, info, t.into_data());
    }
    let mapping = layout::detect(source, weights.names())?;
    let weights = weights.remap(&mapping.map);
    let config = parse_config(source, config_json)?;
    validate::check(source, &config, &weights)?;
    validate::check_finite(source, &weights)?;
    Ok(Model {
        config,
        weights,
        source: source.to_path_buf(),
        layout: mapping.layout,
    })
}

/// The config object in `text`, checked as a file's would be.
fn parse_config(source: &Path, text: &str) -> Result<Config, ImportError> {
    let bad = |reason: String| ImportError::BadConfig {
        path: source.to_path_buf(),
        reason,
    };
    let value: Value = serde_json::from_str(text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    if !value.is_object() {
        return Err(bad("config is not a JSON object".into()));
    }
    let config: Config = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    validate_config(&config).map_err(bad)?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{LoadOptions, load_model};

    fn testdata(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../testdata/models")
            .join(name)
    }

    /// Every tensor of a loaded checkpoint, under its file name.
    fn tensors_of(model: &Model) -> Vec<(String, Tensor)> {
        model
            .weights
            .names()
            .map(|n| {
                let file = model.weights.file_name(n).unwrap_or(n).to_string();
                (file, model.weights.tensor(n).expect("tensor"))
            })
            .collect()
    }

    #[test]
    fn in_memory_tensors_import_as_the_file_does() {
        for name in ["rope", "xl-standalone"] {
            let dir = testdata(name);
            let from_file = load_model(&dir, &LoadOptions::default()).expect("load");
            let config = serde_json::to_string(&from_file.config).expect("config");
            let source = Path::new("<state_dict>");
            let model = load_tensors(source, tensors_of(&from_file), &config).expect("import");
            assert_eq!(model.config, from_file.config, "{name}");
            assert_eq!(model.layout, from_file.layout, "{name}");
            let names: Vec<&str> = model.weights.names().collect();
            assert_eq!(
                names,
                from_file.weights.names().collect::<Vec<_>>(),
                "{name}"
            );
            for n in names {
                let (a, b) = (model.weights.tensor(n), from_file.weights.tensor(n));
                assert_eq!(a.expect("a").data(), b.expect("b").data(), "{name} {n}");
            }
        }
    }

    #[test]
    fn errors_name_the_source_and_the_tensor() {
        let from_file = load_model(&testdata("rope"), &LoadOptions::default()).expect("load");
        let config = serde_json::to_string(&from_file.config).expect("config");
        let mut tensors = tensors_of(&from_file);
        let dropped = tensors.remove(0).0;
        let source = Path::new("<state_dict>");
        let err = load_tensors(source, tensors.clone(), &config).expect_err("missing tensor");
        assert_eq!(
            err.to_string(),
            format!("<state_dict>: missing tensor {dropped}")
        );
        let err = load_tensors(source, tensors, "[1]").expect_err("not an object");
        assert_eq!(
            err.to_string(),
            "<state_dict>: bad config: config is not a JSON object"
        );
    }
}
