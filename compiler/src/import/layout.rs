//! Key layout detection: maps a checkpoint's tensor names onto canonical names.
//!
//! Accepted layouts: the training code's names (identity), and standalone attention modules
//! (`<P>.q.weight`, `<P>.k.weight`, `<P>.v`, `<P>.o`, `<P>.sel_v`, `<P>.sel_o`,
//! `<P>.pos_to_pk`) whose prefix `P` holds exactly one integer component, the layer index.
//! Non-attention tensors keep training-code names in both. A global `module.` or `model.`
//! prefix shared by every key is stripped first.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::ImportError;
use crate::model::Layout;
use crate::names::{IGNORED_SUFFIX, LayerNames};

/// Standalone attention suffixes and the canonical name they map to in layer `i`.
const STANDALONE: [&str; 7] = [
    "q.weight",
    "k.weight",
    "v",
    "o",
    "sel_v",
    "sel_o",
    "pos_to_pk",
];

/// File name -> canonical name for every kept tensor, plus the detected layout.
pub(crate) struct Mapping {
    pub map: BTreeMap<String, String>,
    pub layout: Layout,
}

/// True for the σ-MoE statistics buffer, which is not a weight.
pub(crate) fn is_ignored(name: &str) -> bool {
    name == IGNORED_SUFFIX || name.ends_with(&format!(".{IGNORED_SUFFIX}"))
}

/// Detects the layout of `names` (as stored in `path`).
pub(crate) fn detect<'a>(
    path: &Path,
    names: impl Iterator<Item = &'a str>,
) -> Result<Mapping, ImportError> {
    let names: Vec<&str> = names.collect();
    let strip = global_prefix(&names);
    let mut map = BTreeMap::new();
    let mut prefixes: BTreeMap<usize, String> = BTreeMap::new();
    let mut back: BTreeMap<String, String> = BTreeMap::new();
    for &file_name in &names {
        let name = &file_name[strip..];
        let canonical = match standalone(name) {
            Some((prefix, layer, canonical)) => {
                record_prefix(path, &mut prefixes, layer, prefix)?;
                canonical
            }
            None => name.to_string(),
        };
        if let Some(other) = back.insert(canonical.clone(), file_name.to_string()) {
            return Err(ImportError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("tensors {other} and {file_name} both map to {canonical}"),
            });
        }
        map.insert(file_name.to_string(), canonical);
    }
    let layout = match prefixes.into_values().next() {
        Some(prefix_example) => Layout::Standalone { prefix_example },
        None => Layout::Training,
    };
    Ok(Mapping { map, layout })
}

/// Length of the `module.` / `model.` prefixes every name shares.
fn global_prefix(names: &[&str]) -> usize {
    let mut strip = 0;
    while !names.is_empty() {
        let shared = ["module.", "model."].into_iter().find(|p| {
            names
                .iter()
                .all(|n| n[strip..].starts_with(p) && n.len() > strip + p.len())
        });
        match shared {
            Some(p) => strip += p.len(),
            None => break,
        }
    }
    strip
}

/// `(P, layer, canonical name)` if `name` is a standalone attention tensor.
fn standalone(name: &str) -> Option<(&str, usize, String)> {
    if is_training_attention(name) {
        return None;
    }
    let (prefix, suffix) = STANDALONE
        .iter()
        .find_map(|s| name.strip_suffix(s)?.strip_suffix('.').map(|p| (p, *s)))?;
    let mut ints = prefix.split('.').filter_map(|c| c.parse::<usize>().ok());
    let layer = ints.next()?;
    if ints.next().is_some() {
        return None;
    }
    Some((prefix, layer, canonical(&LayerNames::new(layer), suffix)))
}

fn canonical(l: &LayerNames, suffix: &str) -> String {
    match suffix {
        "q.weight" => l.proj('q'),
        "k.weight" => l.proj('k'),
        "v" => l.proj('v'),
        "o" => l.proj('o'),
        "sel_v" => l.sel('v'),
        "sel_o" => l.sel('o'),
        _ => l.pos_to_pk(),
    }
}

/// `unique_layers.{i}.self_attn.{projections.[qkvo] | selections.[vo] | pos_to_pk}`.
fn is_training_attention(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("unique_layers.") else {
        return false;
    };
    let Some((i, rest)) = rest.split_once('.') else {
        return false;
    };
    i.parse::<usize>().is_ok()
        && matches!(
            rest,
            "self_attn.projections.q"
                | "self_attn.projections.k"
                | "self_attn.projections.v"
                | "self_attn.projections.o"
                | "self_attn.selections.v"
                | "self_attn.selections.o"
                | "self_attn.pos_to_pk"
        )
}

fn record_prefix(
    path: &Path,
    prefixes: &mut BTreeMap<usize, String>,
    layer: usize,
    prefix: &str,
) -> Result<(), ImportError> {
    match prefixes.get(&layer) {
        Some(p) if p != prefix => Err(ImportError::Unsupported {
            path: path.to_path_buf(),
            what: format!("two attention modules for layer {layer}: {p} and {prefix}"),
        }),
        Some(_) => Ok(()),
        None => {
            prefixes.insert(layer, prefix.to_string());
            Ok(())
        }
    }
}
