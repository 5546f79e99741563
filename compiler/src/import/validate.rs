//! Checks imported weights against the config: layer count, every expected tensor present
//! with the expected shape, no extra tensors, all values finite.

use std::collections::BTreeSet;
use std::path::Path;

use super::expected::{ExpectedTensor, expected_tensors};
use crate::config::Config;
use crate::error::ImportError;
use crate::model::Weights;

/// Validates `w` (read from `path`) against `c`.
pub(crate) fn check(path: &Path, c: &Config, w: &Weights) -> Result<(), ImportError> {
    check_layer_count(path, c, w)?;
    let expected = expected_tensors(c);
    for e in &expected {
        check_tensor(path, w, e)?;
    }
    let known: BTreeSet<&str> = expected.iter().map(|e| e.name.as_str()).collect();
    if let Some(extra) = w.names().find(|n| !known.contains(n)) {
        return Err(ImportError::UnexpectedTensor {
            path: path.to_path_buf(),
            tensor: file_name(w, extra),
        });
    }
    Ok(())
}

/// Scans every weight for NaN/Inf.
pub(crate) fn check_finite(path: &Path, w: &Weights) -> Result<(), ImportError> {
    for name in w.names() {
        if let Some(index) = w.first_non_finite(name) {
            return Err(ImportError::NonFinite {
                path: path.to_path_buf(),
                tensor: file_name(w, name),
                index,
            });
        }
    }
    Ok(())
}

fn file_name(w: &Weights, canonical: &str) -> String {
    w.file_name(canonical).unwrap_or(canonical).to_string()
}

/// Layer indices in the weights must be exactly `0..n_layers`'s count.
fn check_layer_count(path: &Path, c: &Config, w: &Weights) -> Result<(), ImportError> {
    let layers: BTreeSet<usize> = w.names().filter_map(layer_of).collect();
    let Some(&top) = layers.last() else {
        return Ok(());
    };
    let found = top + 1;
    if found <= c.n_layers {
        // Fewer layers show up as a missing tensor of the first absent layer.
        return Ok(());
    }
    let tensor = w
        .names()
        .find(|n| layer_of(n) == Some(top))
        .map(|n| file_name(w, n))
        .unwrap_or_default();
    Err(ImportError::LayerCount {
        path: path.to_path_buf(),
        config_value: c.n_layers,
        found,
        tensor,
    })
}

fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("unique_layers.")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

fn check_tensor(path: &Path, w: &Weights, e: &ExpectedTensor) -> Result<(), ImportError> {
    let Some(info) = w.info(&e.name) else {
        return Err(ImportError::MissingTensor {
            path: path.to_path_buf(),
            tensor: e.name.clone(),
        });
    };
    let expected = e.shape();
    if info.shape == expected {
        return Ok(());
    }
    let tensor = file_name(w, &e.name);
    if let Some((key, config_value, from_shapes)) = single_axis_contradiction(e, &info.shape) {
        return Err(ImportError::ConfigContradiction {
            path: path.to_path_buf(),
            key,
            config_value,
            from_shapes,
            tensor,
            shape: info.shape.clone(),
        });
    }
    Err(ImportError::ShapeMismatch {
        path: path.to_path_buf(),
        tensor,
        expected: format!(
            "{expected:?} = [{}]",
            e.axes.iter().map(|a| a.name).collect::<Vec<_>>().join(", ")
        ),
        got: info.shape.clone(),
    })
}

/// If `got` differs from the expected shape only in axes that all stand for the same config
/// quantity, and agrees on one value for it: `(quantity, config value, value from shape)`.
fn single_axis_contradiction(
    e: &ExpectedTensor,
    got: &[usize],
) -> Option<(&'static str, usize, usize)> {
    if got.len() != e.axes.len() {
        return None;
    }
    let mut found: Option<(&'static str, usize, usize)> = None;
    for (axis, &g) in e.axes.iter().zip(got) {
        if axis.size == g {
            continue;
        }
        match found {
            None => found = Some((axis.name, axis.size, g)),
            Some((name, _, v)) if name == axis.name && v == g => {}
            Some(_) => return None,
        }
    }
    // An axis that matched but stands for the same quantity would contradict the new value.
    let (name, _, v) = found?;
    let consistent = e
        .axes
        .iter()
        .zip(got)
        .all(|(a, &g)| a.name != name || g == v);
    consistent.then_some(found?)
}
