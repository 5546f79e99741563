//! The import entry point: path -> file reader -> layout mapping -> config -> validation.

use std::path::Path;

use super::path::{Format, resolve};
use super::{config, layout, pth, safetensors, validate};
use crate::error::ImportError;
use crate::model::Model;

/// Options for [`load_model`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Config `key=value` overrides applied after reading the config (value parsed as JSON
    /// where it parses, else as a string).
    pub overrides: Vec<(String, String)>,
}

/// Loads and validates the checkpoint at `path` (a `.safetensors` or `.pth` file, or a
/// directory holding exactly one) with its config.
pub fn load_model(path: &Path, opts: &LoadOptions) -> Result<Model, ImportError> {
    let (file, format) = resolve(path)?;
    let (weights, metadata_config) = match format {
        Format::Safetensors => {
            let read = safetensors::read(&file)?;
            (read.weights, read.metadata_config)
        }
        Format::Pth => (pth::read(&file)?, None),
    };
    let mapping = layout::detect(&file, weights.names())?;
    let weights = weights.remap(&mapping.map);
    let config = config::load(&file, metadata_config.as_deref(), &opts.overrides)?;
    validate::check(&file, &config, &weights)?;
    validate::check_finite(&file, &weights)?;
    Ok(Model {
        config,
        weights,
        source: file,
        layout: mapping.layout,
    })
}
