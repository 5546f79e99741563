//! What a loaded model is: read off the ONNX interface and initializers.
//!
//! Interface names: input `tokens` i64 `[batch, seq]`, output `logits` f32
//! `[batch, seq, vocab]`; XL models add `memory.{i}` inputs `[batch, mem_len, D]` and
//! `memory_out.{i}` outputs `[batch, seq, D]`, one per layer.

use tract_onnx::pb;

use crate::RuntimeError;

/// Name of the token input.
pub const TOKENS: &str = "tokens";
/// Name of the logits output.
pub const LOGITS: &str = "logits";
/// Prefix of the XL memory inputs.
pub const MEMORY: &str = "memory.";
/// Prefix of the XL memory outputs.
pub const MEMORY_OUT: &str = "memory_out.";
/// KV-cache inputs are `{PAST}{i}.key` / `{PAST}{i}.value`.
pub const PAST: &str = "past_key_values.";
/// KV-cache outputs are `{PRESENT}{i}.key` / `{PRESENT}{i}.value`.
pub const PRESENT: &str = "present.";
/// Metadata key of the training context (RoPE) or chunk length (XL).
pub const CHUNK_SIZE_KEY: &str = "switchhead.chunk_size";

/// The KV cache a model takes: `layers` pairs of `[batch, heads, past, d_head]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvShape {
    pub layers: usize,
    pub heads: usize,
    pub d_head: usize,
}

/// Shape facts of a loaded model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    pub vocab_size: usize,
    pub n_layers: usize,
    pub d_model: usize,
    /// Number of `memory.{i}` inputs (0 for non-XL models).
    pub memory_layers: usize,
    /// The KV-cache inputs, for RoPE models compiled with `--kv-cache`.
    pub kv: Option<KvShape>,
    /// The training context (RoPE) or chunk length (XL), from `switchhead.chunk_size`.
    pub chunk_size: Option<usize>,
}

impl ModelInfo {
    /// True for Transformer-XL models (they take memory).
    pub fn is_xl(&self) -> bool {
        self.memory_layers > 0
    }
}

/// Checks the interface names and reads the facts that do not need the backend.
pub(crate) fn read_info(proto: &pb::ModelProto, vocab: usize) -> Result<ModelInfo, RuntimeError> {
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| interface("no graph".into()))?;
    let inits: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<&str> = graph
        .input
        .iter()
        .map(|i| i.name.as_str())
        .filter(|n| !inits.contains(n))
        .collect();
    if !inputs.contains(&TOKENS) {
        return Err(interface(format!(
            "no `{TOKENS}` input (inputs: {inputs:?})"
        )));
    }
    if !graph.output.iter().any(|o| o.name == LOGITS) {
        return Err(interface(format!("no `{LOGITS}` output")));
    }
    let memory_layers = inputs.iter().filter(|n| n.starts_with(MEMORY)).count();
    for i in 0..memory_layers {
        let name = format!("{MEMORY}{i}");
        if !inputs.contains(&name.as_str()) {
            return Err(interface(format!(
                "memory inputs are not numbered 0..{memory_layers}: {name} missing"
            )));
        }
    }
    let d_model = graph
        .initializer
        .iter()
        .find(|t| t.dims.len() == 2 && t.dims[0] as usize == vocab)
        .map(|t| t.dims[1] as usize)
        .or_else(|| input_last_dim(graph, &format!("{MEMORY}0")))
        .unwrap_or(0);
    let n_layers = count_layers(graph).max(memory_layers);
    let chunk_size = proto
        .metadata_props
        .iter()
        .find(|p| p.key == CHUNK_SIZE_KEY)
        .and_then(|p| p.value.parse().ok());
    Ok(ModelInfo {
        vocab_size: vocab,
        n_layers,
        d_model,
        memory_layers,
        kv: kv_shape(graph, &inputs)?,
        chunk_size,
    })
}

/// `past_key_values.{i}.key/value` inputs numbered from 0, with fixed heads and d_head.
fn kv_shape(graph: &pb::GraphProto, inputs: &[&str]) -> Result<Option<KvShape>, RuntimeError> {
    let layers = inputs.iter().filter(|n| n.starts_with(PAST)).count() / 2;
    if layers == 0 {
        return Ok(None);
    }
    let first = format!("{PAST}0.key");
    let heads = input_dim(graph, &first, 1);
    let d_head = input_dim(graph, &first, 3);
    let (Some(heads), Some(d_head)) = (heads, d_head) else {
        return Err(interface(format!(
            "{first} must be [batch, heads, past, d_head] with fixed heads and d_head"
        )));
    };
    for i in 0..layers {
        for part in ["key", "value"] {
            let name = format!("{PAST}{i}.{part}");
            if !inputs.contains(&name.as_str()) {
                return Err(interface(format!("KV-cache input {name} missing")));
            }
        }
    }
    Ok(Some(KvShape {
        layers,
        heads,
        d_head,
    }))
}

/// Distinct `unique_layers.{i}.` prefixes among the value names, else custom attention nodes.
fn count_layers(graph: &pb::GraphProto) -> usize {
    let names = graph.initializer.iter().map(|t| t.name.as_str());
    let names = names.chain(
        graph
            .node
            .iter()
            .flat_map(|n| n.output.iter().map(String::as_str)),
    );
    let mut layers: Vec<usize> = names
        .filter_map(|n| n.strip_prefix("unique_layers."))
        .filter_map(|rest| rest.split('.').next()?.parse().ok())
        .collect();
    layers.sort_unstable();
    layers.dedup();
    let attention = graph
        .node
        .iter()
        .filter(|n| n.op_type == "MoEAttention")
        .count();
    layers.len().max(attention)
}

pub(crate) fn input_last_dim(graph: &pb::GraphProto, name: &str) -> Option<usize> {
    input_dims(graph, name)?.last().copied().flatten()
}

/// Dimension `axis` of input `name`, when fixed.
pub(crate) fn input_dim(graph: &pb::GraphProto, name: &str, axis: usize) -> Option<usize> {
    input_dims(graph, name)?.get(axis).copied().flatten()
}

fn input_dims(graph: &pb::GraphProto, name: &str) -> Option<Vec<Option<usize>>> {
    use pb::tensor_shape_proto::dimension::Value;
    let input = graph.input.iter().find(|i| i.name == name)?;
    let Some(pb::type_proto::Value::TensorType(t)) = input.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    let dims = t.shape.as_ref()?.dim.iter().map(|d| match d.value {
        Some(Value::DimValue(v)) => usize::try_from(v).ok(),
        _ => None,
    });
    Some(dims.collect())
}

fn interface(reason: String) -> RuntimeError {
    RuntimeError::Interface { reason }
}
