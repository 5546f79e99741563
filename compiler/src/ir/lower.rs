//! Lowering: an imported [`Model`] becomes an IR [`Graph`].
//!
//! Interface: input `tokens` i64 `[B, T]`; XL models also take `memory.{i}` f32 `[B, M, D]`
//! per layer and return `memory_out.{i}` (the layer inputs, `[B, T, D]`) after `logits`
//! f32 `[B, T, V]`. Node names are `layers.{i}.<part>`.

use switchhead_ops::op::{
    AttentionVariant, Merge, MoeAttentionAttrs, Op, PosEncoding, SigmaMoeAttrs,
};

use super::graph::{DType, Dim, Fact, Graph, ValueId};
use crate::config::{AttentionKind, Config, FfnKind, PosEncodingKind};
use crate::model::{DType as WeightDType, Model};
use crate::names::{self, LayerNames};

/// Lowers `model` to a graph.
pub fn lower(model: &Model) -> Graph {
    let mut l = Lowering {
        model,
        g: Graph::default(),
    };
    let c = &model.config;
    let tokens = l.g.add_input(
        "tokens",
        Fact {
            dtype: DType::I64,
            shape: vec![sym("B"), sym("T")],
        },
    );
    let xl = c.pos_encoding == PosEncodingKind::Xl;
    let memories: Vec<ValueId> = match xl {
        true => (0..c.n_layers)
            .map(|i| l.g.add_input(&format!("memory.{i}"), l.memory_fact()))
            .collect(),
        false => Vec::new(),
    };
    let table = l.w(names::EMBEDDING);
    let mut x =
        l.g.add_node("embedding", Op::Embedding, vec![tokens, table]);
    let mut layer_inputs = Vec::new();
    for i in 0..c.n_layers {
        layer_inputs.push(x);
        x = l.block(i, x, memories.get(i).copied());
    }
    let h = l.norm(
        "out_norm",
        x,
        (names::OUT_NORM_W.into(), names::OUT_NORM_B.into()),
    );
    let (w, b) = (l.w(names::OUTPUT_W), l.w(names::OUTPUT_B));
    let logits =
        l.g.add_node("output", Op::Linear { bias: true }, vec![h, w, b]);
    l.g.add_output("logits", logits);
    if xl {
        layer_inputs
            .iter()
            .enumerate()
            .for_each(|(i, &v)| l.g.add_output(&format!("memory_out.{i}"), v));
    }
    l.g
}

/// The MoEAttention attributes a config implies.
pub fn attention_attrs(c: &Config) -> MoeAttentionAttrs {
    let variant = match (c.attention, c.n_experts) {
        (AttentionKind::Dense, _) => AttentionVariant::Dense,
        (AttentionKind::Switchhead, 1) => AttentionVariant::Gated,
        (AttentionKind::Switchhead, _) => AttentionVariant::ExpertsVO,
    };
    let experts_and_k = match variant {
        AttentionVariant::ExpertsVO => (c.n_experts, c.moe_k),
        _ => (1, 1),
    };
    let pos = match c.pos_encoding {
        PosEncodingKind::Rope => PosEncoding::Rope {
            rotate_fraction: c.rotate_fraction,
            base: c.rope_base,
        },
        PosEncodingKind::Xl => PosEncoding::Xl,
    };
    let (experts, k) = experts_and_k;
    MoeAttentionAttrs {
        heads: c.n_heads,
        experts,
        k,
        d_head: c.d_head,
        pos,
        causal: true,
        variant,
        merged: Merge::None,
    }
}

fn sym(s: &str) -> Dim {
    Dim::Sym(s.into())
}

struct Lowering<'m> {
    model: &'m Model,
    g: Graph,
}

impl Lowering<'_> {
    fn w(&mut self, name: &str) -> ValueId {
        let fact = match self.model.weights.info(name) {
            Some(info) => Fact {
                dtype: dtype(info.dtype),
                shape: info.shape.iter().map(|&d| Dim::Known(d)).collect(),
            },
            None => Fact {
                dtype: DType::F32,
                shape: Vec::new(),
            },
        };
        self.g.weight(name, fact)
    }

    fn memory_fact(&self) -> Fact {
        Fact {
            dtype: DType::F32,
            shape: vec![sym("B"), sym("M"), Dim::Known(self.model.config.d_model)],
        }
    }

    fn norm(&mut self, name: &str, x: ValueId, (w, b): (String, String)) -> ValueId {
        let eps = self.model.config.layer_norm_eps;
        let (w, b) = (self.w(&w), self.w(&b));
        self.g.add_node(name, Op::LayerNorm { eps }, vec![x, w, b])
    }

    /// `x += attn(LN1(cat(mem, x)))`, `x += ffn(LN2(x))`.
    fn block(&mut self, i: usize, x: ValueId, memory: Option<ValueId>) -> ValueId {
        let n = LayerNames::new(i);
        let p = format!("layers.{i}");
        let a = self.norm(&format!("{p}.norm1"), x, n.norm1());
        let a_kv = match memory {
            Some(m) => {
                let a_mem = self.norm(&format!("{p}.norm1_memory"), m, n.norm1());
                self.g
                    .add_node(format!("{p}.kv"), Op::ConcatSeq, vec![a_mem, a])
            }
            None => a,
        };
        let att = self.attention(&p, &n, a, a_kv);
        let x = self
            .g
            .add_node(format!("{p}.attn_residual"), Op::Add, vec![x, att]);
        let f = self.norm(&format!("{p}.norm2"), x, n.norm2());
        let y = self.ffn(&p, &n, f);
        self.g
            .add_node(format!("{p}.ffn_residual"), Op::Add, vec![x, y])
    }

    fn attention(&mut self, p: &str, n: &LayerNames, xq: ValueId, xkv: ValueId) -> ValueId {
        let attrs = attention_attrs(&self.model.config);
        let mut inputs = vec![xq, xkv];
        for which in ['q', 'k', 'v', 'o'] {
            inputs.push(self.w(&n.proj(which)));
        }
        let routers: &[char] = match attrs.variant {
            AttentionVariant::ExpertsVO => &['v', 'o'],
            AttentionVariant::Gated => &['o'],
            AttentionVariant::Dense => &[],
        };
        for &which in routers {
            inputs.push(self.w(&n.sel(which)));
        }
        if attrs.pos == PosEncoding::Xl {
            inputs.push(self.w(&n.pos_to_pk()));
        }
        self.g
            .add_node(format!("{p}.attn"), Op::MoEAttention(attrs), inputs)
    }

    fn ffn(&mut self, p: &str, n: &LayerNames, f: ValueId) -> ValueId {
        let c = &self.model.config;
        match c.ffn {
            FfnKind::Dense => {
                let ((w1, b1), (w2, b2)) = (n.linear1(), n.linear2());
                let inputs = vec![f, self.w(&w1), self.w(&b1), self.w(&w2), self.w(&b2)];
                self.g.add_node(format!("{p}.ffn"), Op::DenseFfn, inputs)
            }
            FfnKind::SigmaMoe => {
                let attrs = SigmaMoeAttrs {
                    experts: c.ffn_n_experts.unwrap_or(0),
                    expert_size: c.ffn_expert_size.unwrap_or(0),
                    k: c.ffn_k.unwrap_or(0),
                };
                let inputs = vec![
                    f,
                    self.w(&n.moe_sel()),
                    self.w(&n.moe_keys()),
                    self.w(&n.moe_values()),
                ];
                self.g
                    .add_node(format!("{p}.ffn"), Op::SigmaMoe(attrs), inputs)
            }
        }
    }
}

fn dtype(d: WeightDType) -> DType {
    match d {
        WeightDType::F32 => DType::F32,
        WeightDType::F16 => DType::F16,
        WeightDType::BF16 => DType::BF16,
    }
}
