//! An imported model: its config, its weights under canonical names ([`crate::names`]), and
//! where they came from.
//!
//! Invariant: a [`Model`] returned by [`crate::import::load_model`] has been validated: every
//! tensor the config requires is present with the right shape, there are no others, and all
//! values are finite.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use switchhead_ops::Tensor;

use crate::config::{AttentionKind, Config, FfnKind, PosEncodingKind};
use crate::error::ImportError;

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DType {
    /// IEEE single precision.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// Lower-case name (`f32`, `f16`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Element type and shape of one stored tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Stored element type.
    pub dtype: DType,
    /// Shape, outermost axis first.
    pub shape: Vec<usize>,
}

impl TensorInfo {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Which key layout the checkpoint used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// The training code's names (SPEC.md section 4), as canonical names are.
    Training,
    /// Standalone attention modules under arbitrary prefixes, e.g. `blocks.0.attn`.
    Standalone { prefix_example: String },
}

/// Where a tensor's elements live.
#[derive(Clone)]
enum Data {
    /// Little-endian bytes at `offset..offset + len` of a shared memory map.
    Mapped {
        map: Arc<memmap2::Mmap>,
        offset: usize,
    },
    /// Elements already widened to f32.
    Owned(Arc<Vec<f32>>),
}

/// One tensor: its info, its name in the file, and its data.
#[derive(Clone)]
struct Entry {
    info: TensorInfo,
    file_name: String,
    data: Data,
}

/// The weights of a model under canonical names, backed by a memory map (safetensors) or by
/// tensors loaded into memory (`.pth`).
#[derive(Clone, Default)]
pub struct Weights {
    entries: BTreeMap<String, Entry>,
    /// The checkpoint file, named in errors (empty for in-memory weights).
    path: PathBuf,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        for (name, e) in &self.entries {
            m.entry(name, &format_args!("{}{:?}", e.info.dtype, e.info.shape));
        }
        m.finish()
    }
}

impl Weights {
    /// Weights from in-memory f32 tensors (for tests and generated models).
    pub fn from_tensors(tensors: impl IntoIterator<Item = (String, Tensor)>) -> Self {
        let mut w = Weights::default();
        for (name, t) in tensors {
            let info = TensorInfo {
                dtype: DType::F32,
                shape: t.shape().to_vec(),
            };
            w.insert_owned(name.clone(), name, info, t.into_data());
        }
        w
    }

    /// Empty weights read from `path`.
    pub(crate) fn for_file(path: PathBuf) -> Self {
        Weights {
            entries: BTreeMap::new(),
            path,
        }
    }

    /// Renames entries by `mapping` (file name -> canonical name); unmapped entries are
    /// dropped.
    pub(crate) fn remap(self, mapping: &BTreeMap<String, String>) -> Self {
        let mut entries = BTreeMap::new();
        for (name, entry) in self.entries {
            if let Some(canonical) = mapping.get(&name) {
                entries.insert(canonical.clone(), entry);
            }
        }
        Weights {
            entries,
            path: self.path,
        }
    }

    /// Adds a tensor whose elements are already f32.
    pub(crate) fn insert_owned(
        &mut self,
        canonical: String,
        file_name: String,
        info: TensorInfo,
        data: Vec<f32>,
    ) {
        let data = Data::Owned(Arc::new(data));
        self.entries.insert(
            canonical,
            Entry {
                info,
                file_name,
                data,
            },
        );
    }

    /// Adds a tensor stored at `offset` in `map` (byte length implied by `info`).
    pub(crate) fn insert_mapped(
        &mut self,
        canonical: String,
        file_name: String,
        info: TensorInfo,
        map: Arc<memmap2::Mmap>,
        offset: usize,
    ) {
        let data = Data::Mapped { map, offset };
        self.entries.insert(
            canonical,
            Entry {
                info,
                file_name,
                data,
            },
        );
    }

    /// Shape and dtype of `name`, if present.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.entries.get(name).map(|e| &e.info)
    }

    /// Canonical names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The name `name` had in the checkpoint file (differs from the canonical name for the
    /// standalone layout or a stripped global prefix).
    pub fn file_name(&self, name: &str) -> Option<&str> {
        self.entries.get(name).map(|e| e.file_name.as_str())
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The tensor `name` widened to f32; `MissingTensor` if absent.
    pub fn tensor(&self, name: &str) -> Result<Tensor, ImportError> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| ImportError::MissingTensor {
                path: self.path.clone(),
                tensor: name.to_string(),
            })?;
        let data = match &entry.data {
            Data::Owned(v) => v.as_ref().clone(),
            Data::Mapped { map, offset } => {
                let len = entry.info.numel() * entry.info.dtype.size();
                let bytes =
                    map.get(*offset..*offset + len)
                        .ok_or_else(|| ImportError::Corrupt {
                            path: self.path.clone(),
                            reason: format!("{name} out of range"),
                        })?;
                widen(entry.info.dtype, bytes)
            }
        };
        Tensor::new(entry.info.shape.clone(), data).map_err(|e| ImportError::Corrupt {
            path: self.path.clone(),
            reason: format!("{name}: {e}"),
        })
    }

    /// Index of the first non-finite element of `name`, if any.
    pub(crate) fn first_non_finite(&self, name: &str) -> Option<usize> {
        let entry = self.entries.get(name)?;
        match &entry.data {
            Data::Owned(v) => v.iter().position(|x| !x.is_finite()),
            Data::Mapped { map, offset } => {
                let len = entry.info.numel() * entry.info.dtype.size();
                let bytes = map.get(*offset..*offset + len)?;
                first_non_finite_bytes(entry.info.dtype, bytes)
            }
        }
    }

    /// Total number of elements over all tensors.
    pub fn parameter_count(&self) -> u64 {
        self.entries.values().map(|e| e.info.numel() as u64).sum()
    }

    /// The distinct stored dtypes, sorted.
    pub fn dtypes(&self) -> Vec<DType> {
        let mut d: Vec<DType> = self.entries.values().map(|e| e.info.dtype).collect();
        d.sort();
        d.dedup();
        d
    }
}

/// Little-endian `bytes` of `dtype` widened to f32.
pub(crate) fn widen(dtype: DType, bytes: &[u8]) -> Vec<f32> {
    match dtype {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
    }
}

/// Index of the first NaN/Inf in little-endian `bytes` of `dtype`, by exponent bits.
fn first_non_finite_bytes(dtype: DType, bytes: &[u8]) -> Option<usize> {
    match dtype {
        DType::F32 => bytes.chunks_exact(4).position(|c| {
            let bits = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            bits & 0x7f80_0000 == 0x7f80_0000
        }),
        DType::F16 => bytes.chunks_exact(2).position(|c| {
            let bits = u16::from_le_bytes([c[0], c[1]]);
            bits & 0x7c00 == 0x7c00
        }),
        DType::BF16 => bytes.chunks_exact(2).position(|c| {
            let bits = u16::from_le_bytes([c[0], c[1]]);
            bits & 0x7f80 == 0x7f80
        }),
    }
}

/// An imported, validated model.
#[derive(Debug, Clone)]
pub struct Model {
    /// Hyper-parameters (after overrides).
    pub config: Config,
    /// Weights under canonical names.
    pub weights: Weights,
    /// The checkpoint file.
    pub source: PathBuf,
    /// The key layout detected in the file.
    pub layout: Layout,
}

impl Model {
    /// A multi-line human summary of the architecture, ending with the parameter count.
    pub fn describe(&self) -> String {
        let c = &self.config;
        let mut s = String::new();
        let _ = writeln!(s, "source: {}", self.source.display());
        let _ = writeln!(s, "layout: {}", describe_layout(&self.layout));
        let _ = writeln!(
            s,
            "attention: {}, positions: {}",
            attention_line(c),
            positions_line(c)
        );
        let _ = writeln!(
            s,
            "d_model: {}, layers: {}, heads: {}, d_head: {}",
            c.d_model, c.n_layers, c.n_heads, c.d_head
        );
        let _ = writeln!(s, "ffn: {}", ffn_line(c));
        let _ = writeln!(s, "vocab: {}", c.vocab_size);
        let dtypes: Vec<&str> = self.weights.dtypes().iter().map(|d| d.name()).collect();
        let _ = writeln!(s, "dtype: {}", dtypes.join(", "));
        let _ = writeln!(
            s,
            "parameters: {}",
            thousands(self.weights.parameter_count())
        );
        s
    }
}

fn describe_layout(layout: &Layout) -> String {
    match layout {
        Layout::Training => "training code (unique_layers.{i}.*)".to_string(),
        Layout::Standalone { prefix_example } => {
            format!("standalone attention modules (e.g. {prefix_example}.*)")
        }
    }
}

fn attention_line(c: &Config) -> String {
    match c.attention {
        AttentionKind::Dense => "dense multi-head".to_string(),
        AttentionKind::Switchhead if c.n_experts == 1 => {
            "SwitchHead E=1 (dense with sigmoid output gate)".to_string()
        }
        AttentionKind::Switchhead => {
            format!(
                "SwitchHead, E={} experts per head, k={} active",
                c.n_experts, c.moe_k
            )
        }
    }
}

fn positions_line(c: &Config) -> String {
    match c.pos_encoding {
        PosEncodingKind::Xl => match c.chunk_size {
            Some(t) => format!("Transformer-XL (chunk {t})"),
            None => "Transformer-XL".to_string(),
        },
        PosEncodingKind::Rope => format!(
            "RoPE (n_rot {}, base {})",
            crate::import::n_rot(c),
            c.rope_base
        ),
    }
}

fn ffn_line(c: &Config) -> String {
    match c.ffn {
        FfnKind::Dense => format!("dense, d_ff: {}", c.d_ff.unwrap_or(0)),
        FfnKind::SigmaMoe => format!(
            "sigma-MoE, {} experts x {}, k={}",
            c.ffn_n_experts.unwrap_or(0),
            c.ffn_expert_size.unwrap_or(0),
            c.ffn_k.unwrap_or(0)
        ),
    }
}

/// `n` with commas every three digits, e.g. `262,370,744`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
