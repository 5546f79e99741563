//! Checkpoint import: reads a `.safetensors` or `.pth` checkpoint and its config, maps its key
//! layout onto canonical names ([`crate::names`]) and validates everything against the config.
//!
//! A MODEL directory must hold exactly one `.safetensors`/`.pth` file, or several of which
//! exactly one is named `model.*` (golden-output files may sit beside it).
//!
//! Contract: [`load_model`] either returns a [`crate::Model`] whose every tensor the config
//! requires is present with the right shape, with no extra tensors and only finite values, or
//! an [`crate::ImportError`] naming the file and the offending tensor or key. It never panics
//! on file data. [`load_tensors`] does the same for tensors already in memory.

mod config;
mod expected;
mod layout;
mod load;
mod path;
mod pth;
mod pth_pickle;
mod pth_records;
mod safetensors;
mod tensors;
mod validate;

pub use config::{n_rot, parse_override, validate_config};
pub use expected::{Axis, ExpectedTensor, Init, expected_tensors};
pub use load::{LoadOptions, load_model};
pub use tensors::load_tensors;
