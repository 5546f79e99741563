//! The graph section of a plan: serde types of its JSON, conversion to and from [`Op`], and
//! the structural checks a reader runs (module doc of `plan` for the schema).

use serde::{Deserialize, Serialize};

use super::{PlanError, PlanLayout, QuantBits, QuantShape};
use crate::op::{AttentionVariant, Merge, MoeAttentionAttrs, Op, PosEncoding, SigmaMoeAttrs};

/// The whole graph section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanGraph {
    /// Who wrote the file (informational).
    pub producer: String,
    /// Values are numbered `0 .. n_values`.
    pub n_values: u32,
    pub inputs: Vec<PlanInput>,
    pub outputs: Vec<PlanOutput>,
    pub weights: Vec<PlanWeight>,
    pub nodes: Vec<PlanNode>,
    pub meta: PlanMeta,
}

/// A graph input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanInput {
    pub name: String,
    pub value: u32,
    pub dtype: PlanDType,
}

/// A named graph output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanOutput {
    pub name: String,
    pub value: u32,
}

/// A weight: its value, storage type, shape and bytes in the weights section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanWeight {
    pub name: String,
    pub value: u32,
    pub dtype: PlanDType,
    pub shape: Vec<usize>,
    /// Element order (format version 2; `row_major` when absent).
    #[serde(default, skip_serializing_if = "PlanLayout::is_row_major")]
    pub layout: PlanLayout,
    /// Quantization group (format version 3): required for `i8`/`i4` weights, absent for
    /// the others (module `quant`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<u64>,
    /// From the start of the weights section; a multiple of 64.
    pub offset: u64,
    pub nbytes: u64,
}

impl PlanWeight {
    /// Number of elements of the logical shape.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Number of stored elements (the logical ones plus any layout padding; 0 when the layout
    /// does not apply to the shape, which a verified plan rules out).
    pub fn stored_len(&self) -> usize {
        self.layout.stored_len(&self.shape).unwrap_or(0)
    }

    /// The bits and matrices of a quantized weight (None: not quantized, or a shape or group
    /// a verified plan rules out).
    pub fn quant(&self) -> Option<(QuantBits, QuantShape)> {
        let bits = QuantBits::of(self.dtype)?;
        let group = usize::try_from(self.group?).ok()?;
        Some((bits, QuantShape::of(&self.shape, group)?))
    }
}

/// Element type of an input or a stored weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanDType {
    F32,
    F16,
    Bf16,
    I64,
    /// Quantized, 8 bits per element plus scales (format version 3; module `quant`).
    I8,
    /// Quantized, 4 bits per element plus scales (format version 3; module `quant`).
    I4,
}

impl PlanDType {
    /// Bytes per element; for `i8`/`i4` 1, the size of neither's storage (that is
    /// [`QuantShape::nbytes`]).
    pub fn size(self) -> usize {
        match self {
            PlanDType::F32 => 4,
            PlanDType::F16 | PlanDType::Bf16 => 2,
            PlanDType::I64 => 8,
            PlanDType::I8 | PlanDType::I4 => 1,
        }
    }

    /// Whether this is `i8` or `i4`.
    pub fn is_quantized(self) -> bool {
        matches!(self, PlanDType::I8 | PlanDType::I4)
    }
}

/// One node, in execution order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanNode {
    pub name: String,
    pub op: PlanOp,
    pub inputs: Vec<u32>,
    pub outputs: Vec<u32>,
}

/// Shape facts for loaders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanMeta {
    pub d_model: usize,
    pub vocab_size: usize,
    pub n_layers: usize,
    pub chunk_size: Option<usize>,
}

/// An op with its attributes, as stored (`"type"` names the op).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum PlanOp {
    Embedding,
    LayerNorm {
        eps: f64,
    },
    Linear {
        bias: bool,
    },
    Add,
    Relu,
    Softmax {
        axis: i64,
    },
    ConcatSeq,
    DenseFfn,
    MoEAttention {
        heads: usize,
        experts: usize,
        k: usize,
        d_head: usize,
        pos: PlanPos,
        causal: bool,
        variant: PlanVariant,
        /// Stacked projections: `"all"` (one `qkr` weight) or `"sides"` (`qo`, `kv`);
        /// absent: separate.
        #[serde(default, skip_serializing_if = "PlanMerge::is_none")]
        merged: PlanMerge,
    },
    #[serde(rename = "SigmaMoE")]
    SigmaMoe {
        experts: usize,
        expert_size: usize,
        k: usize,
    },
}

/// Positional encoding of an attention op.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum PlanPos {
    Rope { rotate_fraction: f64, base: f64 },
    Xl,
}

/// Attention variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanVariant {
    ExpertsVo,
    Gated,
    Dense,
}

impl From<&Op> for PlanOp {
    fn from(op: &Op) -> Self {
        match *op {
            Op::Embedding => PlanOp::Embedding,
            Op::LayerNorm { eps } => PlanOp::LayerNorm { eps },
            Op::Linear { bias } => PlanOp::Linear { bias },
            Op::Add => PlanOp::Add,
            Op::Relu => PlanOp::Relu,
            Op::Softmax { axis } => PlanOp::Softmax { axis },
            Op::ConcatSeq => PlanOp::ConcatSeq,
            Op::DenseFfn => PlanOp::DenseFfn,
            Op::MoEAttention(a) => attention_to_plan(&a),
            Op::SigmaMoe(a) => PlanOp::SigmaMoe {
                experts: a.experts,
                expert_size: a.expert_size,
                k: a.k,
            },
        }
    }
}

fn attention_to_plan(a: &MoeAttentionAttrs) -> PlanOp {
    let pos = match a.pos {
        PosEncoding::Rope {
            rotate_fraction,
            base,
        } => PlanPos::Rope {
            rotate_fraction,
            base,
        },
        PosEncoding::Xl => PlanPos::Xl,
    };
    let variant = match a.variant {
        AttentionVariant::ExpertsVO => PlanVariant::ExpertsVo,
        AttentionVariant::Gated => PlanVariant::Gated,
        AttentionVariant::Dense => PlanVariant::Dense,
    };
    PlanOp::MoEAttention {
        heads: a.heads,
        experts: a.experts,
        k: a.k,
        d_head: a.d_head,
        pos,
        causal: a.causal,
        variant,
        merged: a.merged.into(),
    }
}

/// How an attention's projections are merged (`crate::op::Merge`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanMerge {
    #[default]
    None,
    All,
    Sides,
}

impl PlanMerge {
    fn is_none(&self) -> bool {
        *self == PlanMerge::None
    }
}

impl From<Merge> for PlanMerge {
    fn from(m: Merge) -> Self {
        match m {
            Merge::None => PlanMerge::None,
            Merge::All => PlanMerge::All,
            Merge::Sides => PlanMerge::Sides,
        }
    }
}

impl From<PlanMerge> for Merge {
    fn from(m: PlanMerge) -> Self {
        match m {
            PlanMerge::None => Merge::None,
            PlanMerge::All => Merge::All,
            PlanMerge::Sides => Merge::Sides,
        }
    }
}

impl From<&PlanOp> for Op {
    fn from(op: &PlanOp) -> Self {
        match *op {
            PlanOp::Embedding => Op::Embedding,
            PlanOp::LayerNorm { eps } => Op::LayerNorm { eps },
            PlanOp::Linear { bias } => Op::Linear { bias },
            PlanOp::Add => Op::Add,
            PlanOp::Relu => Op::Relu,
            PlanOp::Softmax { axis } => Op::Softmax { axis },
            PlanOp::ConcatSeq => Op::ConcatSeq,
            PlanOp::DenseFfn => Op::DenseFfn,
            PlanOp::MoEAttention {
                heads,
                experts,
                k,
                d_head,
                pos,
                causal,
                variant,
                merged,
            } => Op::MoEAttention(MoeAttentionAttrs {
                heads,
                experts,
                k,
                d_head,
                pos: match pos {
                    PlanPos::Rope {
                        rotate_fraction,
                        base,
                    } => PosEncoding::Rope {
                        rotate_fraction,
                        base,
                    },
                    PlanPos::Xl => PosEncoding::Xl,
                },
                causal,
                variant: match variant {
                    PlanVariant::ExpertsVo => AttentionVariant::ExpertsVO,
                    PlanVariant::Gated => AttentionVariant::Gated,
                    PlanVariant::Dense => AttentionVariant::Dense,
                },
                merged: merged.into(),
            }),
            PlanOp::SigmaMoe {
                experts,
                expert_size,
                k,
            } => Op::SigmaMoe(SigmaMoeAttrs {
                experts,
                expert_size,
                k,
            }),
        }
    }
}

impl PlanGraph {
    /// Parses the graph section.
    pub fn from_json(bytes: &[u8]) -> Result<PlanGraph, PlanError> {
        serde_json::from_slice(bytes).map_err(|e| PlanError::Graph(e.to_string()))
    }

    /// The graph section's bytes (compact JSON).
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing these plain structs cannot fail (no maps with non-string keys).
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The format version this graph needs: 3 if it holds a quantized weight, else 2.
    pub fn format_version(&self) -> u32 {
        match self.weights.iter().any(|w| w.dtype.is_quantized()) {
            true => 3,
            false => 2,
        }
    }

    /// Checks the structural rules: every value defined once, read only after its
    /// definition, arities match the ops, weights inside `weights_len` and 64-byte aligned.
    pub fn validate(&self, weights_len: u64) -> Result<(), PlanError> {
        let definitions = self.inputs.len()
            + self.weights.len()
            + self.nodes.iter().map(|n| n.outputs.len()).sum::<usize>();
        if self.n_values as usize > definitions {
            return Err(graph_err(format!(
                "n_values {} exceeds the {definitions} values the graph defines",
                self.n_values
            )));
        }
        let mut defined = vec![false; self.n_values as usize];
        let mut define = |v: u32, what: &str| -> Result<(), PlanError> {
            match defined.get_mut(v as usize) {
                Some(d) if !*d => {
                    *d = true;
                    Ok(())
                }
                Some(_) => Err(graph_err(format!("value {v} ({what}) is defined twice"))),
                None => Err(graph_err(format!(
                    "value {v} ({what}) is outside 0..{}",
                    self.n_values
                ))),
            }
        };
        for i in &self.inputs {
            define(i.value, &i.name)?;
        }
        for w in &self.weights {
            check_weight(w, weights_len)?;
            define(w.value, &w.name)?;
        }
        self.validate_nodes(&mut defined)?;
        self.validate_layouts()?;
        for o in &self.outputs {
            if !defined.get(o.value as usize).copied().unwrap_or(false) {
                return Err(graph_err(format!("output {} is never defined", o.name)));
            }
        }
        Ok(())
    }

    /// A packed weight is read only where the executor streams that layout
    /// ([`super::packed_layout`]).
    fn validate_layouts(&self) -> Result<(), PlanError> {
        let packed: std::collections::HashMap<u32, (&str, PlanLayout)> = self
            .weights
            .iter()
            .filter(|w| w.layout != PlanLayout::RowMajor)
            .map(|w| (w.value, (w.name.as_str(), w.layout)))
            .collect();
        for n in &self.nodes {
            for (slot, v) in n.inputs.iter().enumerate() {
                let Some(&(name, layout)) = packed.get(v) else {
                    continue;
                };
                if super::packed_layout(&Op::from(&n.op), slot) != Some(layout) {
                    return Err(graph_err(format!(
                        "weight {name:?} is stored in {} but node {:?} reads it as input {slot}",
                        layout.name(),
                        n.name
                    )));
                }
            }
        }
        Ok(())
    }

    fn validate_nodes(&self, defined: &mut [bool]) -> Result<(), PlanError> {
        for n in &self.nodes {
            let op = Op::from(&n.op);
            if n.inputs.len() != op.arity() || n.outputs.len() != 1 {
                return Err(graph_err(format!(
                    "node {:?} ({}) has {} inputs and {} outputs, expected {} and 1",
                    n.name,
                    op.name(),
                    n.inputs.len(),
                    n.outputs.len(),
                    op.arity()
                )));
            }
            if let Some(v) = n
                .inputs
                .iter()
                .find(|&&v| !defined.get(v as usize).copied().unwrap_or(false))
            {
                return Err(graph_err(format!(
                    "node {:?} reads value {v} before it is defined",
                    n.name
                )));
            }
            let out = n.outputs[0] as usize;
            match defined.get_mut(out) {
                Some(d) if !*d => *d = true,
                _ => {
                    return Err(graph_err(format!(
                        "node {:?} output {out} is out of range or defined twice",
                        n.name
                    )));
                }
            }
        }
        Ok(())
    }
}

fn check_weight(w: &PlanWeight, weights_len: u64) -> Result<(), PlanError> {
    let err = |reason: String| PlanError::Weight {
        name: w.name.clone(),
        reason,
    };
    if w.dtype == PlanDType::I64 {
        return Err(err("i64 weights are not supported".into()));
    }
    if let Some(bits) = QuantBits::of(w.dtype) {
        check_quant(w, bits).map_err(err)?;
    } else if let Some(g) = w.group {
        return Err(err(format!(
            "group {g} is only for i8/i4 weights, this one is {:?}",
            w.dtype
        )));
    }
    check_bytes(w, weights_len).map_err(err)
}

/// A quantized weight's group, layout, rank and nbytes (compared, never allocated).
fn check_quant(w: &PlanWeight, bits: QuantBits) -> Result<(), String> {
    let dtype = format!("{:?}", w.dtype).to_lowercase();
    let group = match w.group {
        None => return Err(format!("{dtype} weight has no \"group\" (required)")),
        Some(0) => return Err(format!("{dtype} weight has group 0 (must be >= 1)")),
        Some(g) => usize::try_from(g).map_err(|_| format!("group {g} is out of range"))?,
    };
    if w.layout != PlanLayout::RowMajor {
        return Err(format!(
            "{dtype} weight is in layout {}; quantized weights are row_major only",
            w.layout.name()
        ));
    }
    let Some(s) = QuantShape::of(&w.shape, group) else {
        return Err(format!(
            "{dtype} weight has shape {:?}; quantized weights are [out, in] or [E, in, out]",
            w.shape
        ));
    };
    match s.checked_nbytes(bits) {
        Some(n) if n as u64 == w.nbytes => Ok(()),
        Some(n) => Err(format!(
            "nbytes {} does not match shape {:?} of {dtype} with group {group} ({n} expected)",
            w.nbytes, w.shape
        )),
        None => Err(format!(
            "shape {:?} of {dtype} with group {group} overflows the address space",
            w.shape
        )),
    }
}

/// The stored size of an unquantized weight, then any weight's offset and bounds.
fn check_bytes(w: &PlanWeight, weights_len: u64) -> Result<(), String> {
    if !w.dtype.is_quantized() {
        check_plain_size(w)?;
    }
    if !w.offset.is_multiple_of(super::ALIGN) {
        return Err(format!("offset {} is not 64-byte aligned", w.offset));
    }
    if w.offset
        .checked_add(w.nbytes)
        .is_none_or(|e| e > weights_len)
    {
        return Err(format!(
            "bytes {}..{} are outside the {weights_len}-byte weights section",
            w.offset,
            w.offset.saturating_add(w.nbytes)
        ));
    }
    Ok(())
}

fn check_plain_size(w: &PlanWeight) -> Result<(), String> {
    let Some(stored) = w.layout.stored_len(&w.shape) else {
        return Err(format!(
            "layout {} does not apply to shape {:?}",
            w.layout.name(),
            w.shape
        ));
    };
    let want = (stored as u64).checked_mul(w.dtype.size() as u64);
    if want != Some(w.nbytes) {
        return Err(format!(
            "nbytes {} does not match shape {:?} of {:?} in layout {}",
            w.nbytes,
            w.shape,
            w.dtype,
            w.layout.name()
        ));
    }
    Ok(())
}

fn graph_err(s: String) -> PlanError {
    PlanError::Graph(s)
}
