//! The closed op vocabulary of the IR: one variant per op, with its attributes.
//!
//! Inputs are listed per variant (order matters); weights are ordinary inputs that the IR
//! binds to named weights. Shapes use B (batch), T (query length), Tk (key length), D.
//! Each op's numerics are the reference function named in its doc.

/// Positional encoding of an attention op.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PosEncoding {
    /// Rotary embedding on `int(rotate_fraction * d_head)` channels ([`crate::rope`]).
    Rope { rotate_fraction: f64, base: f64 },
    /// Transformer-XL relative positions ([`crate::xl_pos`]); takes a `pos_to_pk` input.
    Xl,
}

/// Which projections of the attention are mixtures of experts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttentionVariant {
    /// SwitchHead: V and O are experts, routed by `sel_v` / `sel_o` (paper variant).
    ExpertsVO,
    /// E = 1: dense V and O, per-head sigmoid output gate `sel_o [H, D]`.
    Gated,
    /// Plain dense multi-head attention.
    Dense,
}

/// Attributes of [`Op::MoEAttention`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MoeAttentionAttrs {
    pub heads: usize,
    /// Experts per head (1 for Gated and Dense).
    pub experts: usize,
    /// Active experts per head (1 for Gated and Dense).
    pub k: usize,
    pub d_head: usize,
    pub pos: PosEncoding,
    /// Always true for language models: query r sees keys up to `r + (Tk - T)`.
    pub causal: bool,
    pub variant: AttentionVariant,
    /// Whether q, k and the routers are merged into stacked weights (the
    /// `merge-projections` pass).
    pub merged: Merge,
}

/// How an attention's input projections (q, k and the routers: `sel_v`, and `sel_o` or the
/// gated variant's head gate) are stored. Merged, one product computes several of them and
/// the executors read each as a column block of it ([`MoeAttentionAttrs::merged_blocks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Merge {
    /// One weight each.
    #[default]
    None,
    /// xq and xkv are the same rows: one `qkr [2*H*dh + R, D]` weight, rows q, k, `sel_v`,
    /// `sel_o` (those the variant has), one product.
    All,
    /// xq and xkv differ (Transformer-XL memory): `qo [H*dh + R_o, D]` (rows q, `sel_o`) on
    /// the query side and `kv [H*dh + R_v, D]` (rows k, `sel_v`) on the key/value side, two
    /// products.
    Sides,
}

impl Merge {
    /// The name in the IR text form and the plan (`none`, `all`, `sides`).
    pub fn name(self) -> &'static str {
        match self {
            Merge::None => "none",
            Merge::All => "all",
            Merge::Sides => "sides",
        }
    }

    /// The inverse of [`Merge::name`].
    pub fn from_name(name: &str) -> Option<Merge> {
        [Merge::None, Merge::All, Merge::Sides]
            .into_iter()
            .find(|m| m.name() == name)
    }
}

/// Where each input of a `MoEAttention` node sits (see [`Op::MoEAttention`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionSlots {
    /// `q`, or the merged `qkr` (all) or `qo` (sides) weight.
    pub q: usize,
    /// `k`, or the merged `kv` (sides); equals `q` when all are merged.
    pub k: usize,
    pub v: usize,
    pub o: usize,
    /// The separate value router, if the node has one (none when merged).
    pub sel_v: Option<usize>,
    /// The separate output router or head gate, if the node has one (none when merged).
    pub sel_o: Option<usize>,
    pub pos_to_pk: Option<usize>,
}

/// Rows of each projection (columns of the product): q, k, and the routers the variant
/// has (0 where absent). Merged weights stack them: `all` as q, k, sel_v, sel_o; `sides` as
/// q, sel_o (query side) and k, sel_v (key/value side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergedBlocks {
    pub q: usize,
    pub k: usize,
    pub sel_v: usize,
    pub sel_o: usize,
}

impl MergedBlocks {
    /// All rows: the width of the `all` product.
    pub fn total(&self) -> usize {
        self.q + self.k + self.sel_v + self.sel_o
    }

    /// First column of each block in the `all` product: `(q, k, sel_v, sel_o)`.
    pub fn starts(&self) -> (usize, usize, usize, usize) {
        (0, self.q, self.q + self.k, self.q + self.k + self.sel_v)
    }

    /// Widths of the `sides` products: `(query side, key/value side)`.
    pub fn sides(&self) -> (usize, usize) {
        (self.q + self.sel_o, self.k + self.sel_v)
    }
}

impl MoeAttentionAttrs {
    /// Router rows of the variant: `(sel_v, sel_o)`.
    pub fn router_rows(&self) -> (usize, usize) {
        let he = self.heads * self.experts;
        match self.variant {
            AttentionVariant::ExpertsVO => (he, he),
            AttentionVariant::Gated => (0, self.heads),
            AttentionVariant::Dense => (0, 0),
        }
    }

    /// The blocks of the merged `qkr` weight.
    pub fn merged_blocks(&self) -> MergedBlocks {
        let hd = self.heads * self.d_head;
        let (sel_v, sel_o) = self.router_rows();
        MergedBlocks {
            q: hd,
            k: hd,
            sel_v,
            sel_o,
        }
    }

    /// Where each input sits.
    pub fn slots(&self) -> AttentionSlots {
        let xl = self.pos == PosEncoding::Xl;
        let merged = |k: usize| AttentionSlots {
            q: 2,
            k,
            v: k + 1,
            o: k + 2,
            sel_v: None,
            sel_o: None,
            pos_to_pk: xl.then_some(k + 3),
        };
        match self.merged {
            Merge::All => return merged(2),
            Merge::Sides => return merged(3),
            Merge::None => {}
        }
        let (sel_v, sel_o) = match self.variant {
            AttentionVariant::ExpertsVO => (Some(6), Some(7)),
            AttentionVariant::Gated => (None, Some(6)),
            AttentionVariant::Dense => (None, None),
        };
        let routers = usize::from(sel_v.is_some()) + usize::from(sel_o.is_some());
        AttentionSlots {
            q: 2,
            k: 3,
            v: 4,
            o: 5,
            sel_v,
            sel_o,
            pos_to_pk: xl.then_some(6 + routers),
        }
    }
}

/// Attributes of [`Op::SigmaMoe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SigmaMoeAttrs {
    /// N_E.
    pub experts: usize,
    /// G.
    pub expert_size: usize,
    /// K_ff.
    pub k: usize,
}

/// One op of the IR.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Inputs: tokens i64 `[B, T]`, table `[V, D]`. Output `[B, T, D]` ([`crate::embedding`]).
    Embedding,
    /// Inputs: x `[.., D]`, weight `[D]`, bias `[D]`. Output like x ([`crate::layer_norm`]).
    LayerNorm { eps: f64 },
    /// Inputs: x `[.., in]`, weight `[out, in]`, and bias `[out]` if `bias`. Output `[.., out]`.
    Linear { bias: bool },
    /// Inputs: a, b of equal shape. Output a + b.
    Add,
    /// Input x. Output max(x, 0).
    Relu,
    /// Input x. Output softmax over `axis`.
    Softmax { axis: i64 },
    /// Inputs: a `[B, M, D]`, b `[B, T, D]`. Output `[B, M+T, D]` (concatenation on axis 1).
    ConcatSeq,
    /// Inputs: x, w1 `[d_ff, D]`, b1, w2 `[D, d_ff]`, b2. Output like x ([`crate::ffn`]).
    DenseFfn,
    /// Inputs: xq `[B, T, D]`, xkv `[B, Tk, D]`, q `[H*dh, D]`, k `[H*dh, D]`, v, o, then by
    /// variant: ExpertsVO `sel_v [H*E, D]`, `sel_o [H*E, D]`; Gated `sel_o [H, D]`; Dense none;
    /// then `pos_to_pk [H*dh, D]` when pos is Xl. v/o are `[H*E, D, dh]`/`[H*E, dh, D]` for
    /// ExpertsVO, `[H*dh, D]`/`[D, H*dh]` otherwise. Merged ([`Merge`]) all: xq, xkv, `qkr`,
    /// v, o, then `pos_to_pk` when Xl; by sides: xq, xkv, `qo`, `kv`, v, o, then `pos_to_pk`
    /// when Xl. Output `[B, T, D]` ([`crate::moe_attention`]).
    MoEAttention(MoeAttentionAttrs),
    /// Inputs: x `[.., D]`, router `[N_E, D]`, keys `[N_E, D, G]`, values `[N_E, G, D]`.
    /// Output like x ([`crate::sigma_moe`]).
    SigmaMoe(SigmaMoeAttrs),
}

impl Op {
    /// The op's name in the IR text form and in ONNX (`ai.switchhead` domain for ours).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Embedding => "Embedding",
            Op::LayerNorm { .. } => "LayerNorm",
            Op::Linear { .. } => "Linear",
            Op::Add => "Add",
            Op::Relu => "Relu",
            Op::Softmax { .. } => "Softmax",
            Op::ConcatSeq => "ConcatSeq",
            Op::DenseFfn => "DenseFfn",
            Op::MoEAttention(_) => "MoEAttention",
            Op::SigmaMoe(_) => "SigmaMoE",
        }
    }

    /// How many inputs the op takes.
    pub fn arity(&self) -> usize {
        match self {
            Op::Relu | Op::Softmax { .. } => 1,
            Op::Embedding | Op::Add | Op::ConcatSeq => 2,
            Op::LayerNorm { .. } => 3,
            Op::Linear { bias } => 2 + usize::from(*bias),
            Op::DenseFfn => 5,
            Op::SigmaMoe(_) => 4,
            Op::MoEAttention(a) => moe_attention_arity(a),
        }
    }
}

fn moe_attention_arity(a: &MoeAttentionAttrs) -> usize {
    let s = a.slots();
    let last = [s.v, s.o]
        .into_iter()
        .chain(s.sel_v)
        .chain(s.sel_o)
        .chain(s.pos_to_pk);
    last.max().unwrap_or(0) + 1
}
