//! Finding, overriding and checking a checkpoint's config.
//!
//! Sources, first found wins: `config.json` beside the checkpoint, then the safetensors
//! `__metadata__` entry `config` (a JSON string). Overrides (`key=value`) are applied on top;
//! a value is parsed as JSON where it parses, else taken as a string.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::config::{AttentionKind, Config, FfnKind, PosEncodingKind};
use crate::error::ImportError;

/// Splits `key=value`; errors on a missing `=` or an empty key.
pub fn parse_override(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

/// Number of rotated channels per head: `int(rotate_fraction * d_head)`.
pub fn n_rot(config: &Config) -> usize {
    let n = config.rotate_fraction * config.d_head as f64;
    if n.is_finite() && n > 0.0 {
        n as usize
    } else {
        0
    }
}

/// Reads the config for checkpoint `ckpt`, applies `overrides` and validates it.
pub(crate) fn load(
    ckpt: &Path,
    metadata_config: Option<&str>,
    overrides: &[(String, String)],
) -> Result<Config, ImportError> {
    let (value, path) = match find(ckpt, metadata_config)? {
        Some(found) => found,
        None if overrides.is_empty() => return Err(missing(ckpt)),
        None => (Value::Object(Map::new()), ckpt.to_path_buf()),
    };
    let value = apply_overrides(value, overrides, &path)?;
    let config: Config = serde_json::from_value(value)
        .map_err(|e| bad(&path, format!("{e}{}", overrides_note(overrides))))?;
    validate_config(&config).map_err(|reason| bad(&path, reason))?;
    Ok(config)
}

fn overrides_note(overrides: &[(String, String)]) -> &'static str {
    if overrides.is_empty() {
        ""
    } else {
        " (after applying --set overrides)"
    }
}

fn missing(ckpt: &Path) -> ImportError {
    ImportError::MissingConfig {
        path: ckpt.to_path_buf(),
        looked: format!(
            "{} and the safetensors __metadata__ key \"config\"",
            beside(ckpt).display()
        ),
    }
}

fn beside(ckpt: &Path) -> PathBuf {
    ckpt.parent().unwrap_or(Path::new(".")).join("config.json")
}

fn bad(path: &Path, reason: String) -> ImportError {
    ImportError::BadConfig {
        path: path.to_path_buf(),
        reason,
    }
}

/// The config JSON and the file it came from, if any source has one.
fn find(
    ckpt: &Path,
    metadata_config: Option<&str>,
) -> Result<Option<(Value, PathBuf)>, ImportError> {
    let file = beside(ckpt);
    if file.is_file() {
        let text = std::fs::read_to_string(&file).map_err(|source| ImportError::Io {
            path: file.clone(),
            source,
        })?;
        let v =
            serde_json::from_str(&text).map_err(|e| bad(&file, format!("invalid JSON: {e}")))?;
        return Ok(Some((v, file)));
    }
    match metadata_config {
        Some(text) => {
            let v = serde_json::from_str(text)
                .map_err(|e| bad(ckpt, format!("__metadata__ config is not valid JSON: {e}")))?;
            Ok(Some((v, ckpt.to_path_buf())))
        }
        None => Ok(None),
    }
}

fn apply_overrides(
    value: Value,
    overrides: &[(String, String)],
    path: &Path,
) -> Result<Value, ImportError> {
    let Value::Object(mut map) = value else {
        return Err(bad(path, "config is not a JSON object".into()));
    };
    for (k, v) in overrides {
        let parsed = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.clone()));
        map.insert(k.clone(), parsed);
    }
    Ok(Value::Object(map))
}

/// Checks the config's values on their own (shapes are checked separately).
pub fn validate_config(c: &Config) -> Result<(), String> {
    positive(&[
        ("vocab_size", c.vocab_size),
        ("d_model", c.d_model),
        ("n_layers", c.n_layers),
        ("n_heads", c.n_heads),
        ("d_head", c.d_head),
    ])?;
    if !(c.layer_norm_eps.is_finite() && c.layer_norm_eps > 0.0) {
        return Err(format!(
            "layer_norm_eps = {} must be positive",
            c.layer_norm_eps
        ));
    }
    if c.chunk_size == Some(0) {
        return Err("chunk_size = 0 must be positive".into());
    }
    check_attention(c)?;
    check_positions(c)?;
    check_ffn(c)
}

fn positive(values: &[(&str, usize)]) -> Result<(), String> {
    match values.iter().find(|(_, v)| *v == 0) {
        Some((k, _)) => Err(format!("{k} = 0 must be positive")),
        None => Ok(()),
    }
}

fn check_attention(c: &Config) -> Result<(), String> {
    if c.attention == AttentionKind::Dense {
        return Ok(());
    }
    positive(&[("n_experts", c.n_experts), ("moe_k", c.moe_k)])?;
    if c.moe_k > c.n_experts {
        return Err(format!(
            "moe_k = {} exceeds n_experts = {}",
            c.moe_k, c.n_experts
        ));
    }
    Ok(())
}

fn check_positions(c: &Config) -> Result<(), String> {
    if c.pos_encoding != PosEncodingKind::Rope {
        return Ok(());
    }
    if !(c.rotate_fraction > 0.0 && c.rotate_fraction <= 1.0) {
        return Err(format!(
            "rotate_fraction = {} must be in (0, 1]",
            c.rotate_fraction
        ));
    }
    if !(c.rope_base.is_finite() && c.rope_base > 0.0) {
        return Err(format!("rope_base = {} must be positive", c.rope_base));
    }
    let n = n_rot(c);
    if n == 0 || !n.is_multiple_of(2) {
        return Err(format!(
            "RoPE rotates n_rot = int(rotate_fraction * d_head) = int({} * {}) = {} channels, \
             which must be even and positive",
            c.rotate_fraction, c.d_head, n
        ));
    }
    Ok(())
}

fn check_ffn(c: &Config) -> Result<(), String> {
    match c.ffn {
        FfnKind::Dense => match c.d_ff {
            Some(0) => Err("d_ff = 0 must be positive".into()),
            Some(_) => Ok(()),
            None => Err("ffn = \"dense\" needs d_ff".into()),
        },
        FfnKind::SigmaMoe => check_sigma_moe(c),
    }
}

fn check_sigma_moe(c: &Config) -> Result<(), String> {
    let need = |k: &str, v: Option<usize>| match v {
        Some(0) => Err(format!("{k} = 0 must be positive")),
        Some(v) => Ok(v),
        None => Err(format!("ffn = \"sigma_moe\" needs {k}")),
    };
    let n = need("ffn_n_experts", c.ffn_n_experts)?;
    need("ffn_expert_size", c.ffn_expert_size)?;
    let k = need("ffn_k", c.ffn_k)?;
    if k > n {
        return Err(format!("ffn_k = {k} exceeds ffn_n_experts = {n}"));
    }
    Ok(())
}
