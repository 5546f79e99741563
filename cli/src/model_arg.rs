//! The MODEL argument shared by subcommands that load a checkpoint, with `--set` overrides.

use std::path::PathBuf;

use switchhead_compiler::Model;
use switchhead_compiler::import::{LoadOptions, load_model, parse_override};

/// A checkpoint path plus config overrides.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArg {
    /// A .safetensors or .pth checkpoint, or a directory holding exactly one (plus config.json).
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,
    /// Override a config key, e.g. `--set pos_encoding=xl --set moe_k=3` (repeatable; the value
    /// is parsed as JSON where it parses, else taken as a string).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_override)]
    pub set: Vec<(String, String)>,
}

impl ModelArg {
    /// Loads and validates the model.
    pub fn load(&self) -> anyhow::Result<Model> {
        let opts = LoadOptions {
            overrides: self.set.clone(),
        };
        // ImportError names the file itself; no extra context needed.
        Ok(load_model(&self.model, &opts)?)
    }
}
