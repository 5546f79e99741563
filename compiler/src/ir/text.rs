//! The canonical text form of a [`Graph`]: deterministic, diff-friendly, parsed back by
//! [`super::parse`].
//!
//! Layout, one item per line:
//! - graph inputs in interface order: `input %0 = "tokens": i64[B,T]`;
//! - weights in first-use order (unused weights last, in arena order):
//!   `%1 = weight f32[256,72] @ "embedding.weight"`, a derived weight followed by its recipe
//!   (`... @ "output.weight.fold" = scale_inputs("output.weight", "out_norm.weight")`);
//! - live nodes in order: `%5 = Linear[bias=true](%3, %1, %2) : f32[B,T,256]  # output`,
//!   attributes sorted by name, the facts after ` : ` only when one is known (`?` marks an
//!   unknown one among several outputs);
//! - graph outputs: `output "logits" = %5`.
//!
//! Values are renumbered `%0, %1, ...` in that definition order, so the text of a graph does
//! not depend on arena ids or tombstones. Floats print with `{:?}`, which round-trips exactly.
//! A reference to a value that has no definition in the text prints as `%!{arena id}` (only an
//! invalid graph has one; the parser rejects it).

use std::fmt::{self, Write as _};

use switchhead_ops::op::{AttentionVariant, Merge, Op, PosEncoding};

use super::graph::{Dim, Fact, Graph, Node, NodeId, ValueDef, ValueId};

/// The canonical text of `g`.
pub fn print(g: &Graph) -> String {
    let p = Printer::new(g);
    let mut s = String::new();
    for &v in &g.inputs {
        let _ = writeln!(s, "{}", p.input_line(v));
    }
    for &v in &p.weights {
        let _ = writeln!(s, "{}", p.weight_line(v));
    }
    for (_, node) in g.live_nodes() {
        let _ = writeln!(s, "{}", p.node_line(node));
    }
    for (name, v) in &g.outputs {
        let _ = writeln!(s, "output {name:?} = {}", p.value(*v));
    }
    s
}

/// The text line of node `id` as [`print`] writes it (for error messages).
pub fn node_text(g: &Graph, id: NodeId) -> String {
    match g.nodes.get(id.0 as usize) {
        Some(Some(node)) => Printer::new(g).node_line(node),
        _ => format!("<no node {}>", id.0),
    }
}

/// `Op[attr=value, ...]` with attributes sorted by name (no brackets without attributes).
pub fn op_text(op: &Op) -> String {
    let mut attrs = op_attrs(op);
    attrs.sort_by(|a, b| a.0.cmp(b.0));
    if attrs.is_empty() {
        return op.name().to_string();
    }
    let list: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{}[{}]", op.name(), list.join(", "))
}

/// `f32[B,T,72]`.
pub fn fact_text(f: &Fact) -> String {
    let dims: Vec<String> = f.shape.iter().map(dim_text).collect();
    format!("{}[{}]", f.dtype.name(), dims.join(","))
}

/// A dim as the text form writes it: the number, or the symbol's name.
pub fn dim_text(d: &Dim) -> String {
    match d {
        Dim::Known(n) => n.to_string(),
        Dim::Sym(s) => s.clone(),
    }
}

/// Weight values in first-use order (live node inputs, then graph outputs), then unused ones.
pub fn weight_order(g: &Graph) -> Vec<ValueId> {
    let uses = g.live_nodes().flat_map(|(_, n)| n.inputs.iter().copied());
    let all = (0..g.values.len() as u32).map(ValueId);
    let candidates = uses.chain(g.outputs.iter().map(|(_, v)| *v)).chain(all);
    let mut seen = vec![false; g.values.len()];
    let mut order = Vec::new();
    for v in candidates {
        let is_weight = matches!(
            g.values.get(v.0 as usize).map(|x| &x.def),
            Some(ValueDef::Weight(_))
        );
        if is_weight && !std::mem::replace(&mut seen[v.0 as usize], true) {
            order.push(v);
        }
    }
    order
}

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&print(self))
    }
}

struct Printer<'g> {
    g: &'g Graph,
    weights: Vec<ValueId>,
    /// Printed number of each arena value, if it has a definition in the text.
    num: Vec<Option<u32>>,
}

impl<'g> Printer<'g> {
    fn new(g: &'g Graph) -> Self {
        let weights = weight_order(g);
        let outs = g.live_nodes().flat_map(|(_, n)| n.outputs.iter().copied());
        let order = g
            .inputs
            .iter()
            .copied()
            .chain(weights.iter().copied())
            .chain(outs);
        let mut num = vec![None; g.values.len()];
        let mut next = 0;
        for v in order {
            if let Some(slot) = num.get_mut(v.0 as usize).filter(|s| s.is_none()) {
                *slot = Some(next);
                next += 1;
            }
        }
        Printer { g, weights, num }
    }

    fn value(&self, v: ValueId) -> String {
        match self.num.get(v.0 as usize) {
            Some(Some(n)) => format!("%{n}"),
            _ => format!("%!{}", v.0),
        }
    }

    fn fact(&self, v: ValueId) -> Option<&'g Fact> {
        self.g
            .values
            .get(v.0 as usize)
            .and_then(|x| x.fact.as_ref())
    }

    fn fact_or_unknown(&self, v: ValueId) -> String {
        self.fact(v).map_or_else(|| "?".to_string(), fact_text)
    }

    fn def_name(&self, v: ValueId) -> &'g str {
        match self.g.values.get(v.0 as usize).map(|x| &x.def) {
            Some(ValueDef::Input(n) | ValueDef::Weight(n)) => n,
            _ => "",
        }
    }

    fn input_line(&self, v: ValueId) -> String {
        format!(
            "input {} = {:?}: {}",
            self.value(v),
            self.def_name(v),
            self.fact_or_unknown(v)
        )
    }

    fn weight_line(&self, v: ValueId) -> String {
        let name = self.def_name(v);
        let recipe = self
            .g
            .derived
            .get(name)
            .map_or_else(String::new, |r| format!(" = {r}"));
        format!(
            "{} = weight {} @ {name:?}{recipe}",
            self.value(v),
            self.fact_or_unknown(v),
        )
    }

    fn node_line(&self, node: &Node) -> String {
        let join = |vs: Vec<String>| vs.join(", ");
        let outs = join(node.outputs.iter().map(|&v| self.value(v)).collect());
        let ins = join(node.inputs.iter().map(|&v| self.value(v)).collect());
        let mut line = format!("{outs} = {}({ins})", op_text(&node.op));
        if node.outputs.iter().any(|&v| self.fact(v).is_some()) {
            let facts = join(
                node.outputs
                    .iter()
                    .map(|&v| self.fact_or_unknown(v))
                    .collect(),
            );
            let _ = write!(line, " : {facts}");
        }
        let _ = write!(line, "  # {}", node.name);
        line
    }
}

fn op_attrs(op: &Op) -> Vec<(&'static str, String)> {
    match op {
        Op::Embedding | Op::Add | Op::Relu | Op::ConcatSeq | Op::DenseFfn => Vec::new(),
        Op::LayerNorm { eps } => vec![("eps", format!("{eps:?}"))],
        Op::Linear { bias } => vec![("bias", bias.to_string())],
        Op::Softmax { axis } => vec![("axis", axis.to_string())],
        Op::MoEAttention(a) => {
            let mut attrs = vec![
                ("causal", a.causal.to_string()),
                ("d_head", a.d_head.to_string()),
                ("experts", a.experts.to_string()),
                ("heads", a.heads.to_string()),
                ("k", a.k.to_string()),
            ];
            if a.merged != Merge::None {
                attrs.push(("merged", a.merged.name().to_string()));
            }
            attrs.push(("pos", pos_text(&a.pos)));
            attrs.push(("variant", variant_text(a.variant).to_string()));
            attrs
        }
        Op::SigmaMoe(a) => vec![
            ("expert_size", a.expert_size.to_string()),
            ("experts", a.experts.to_string()),
            ("k", a.k.to_string()),
        ],
    }
}

fn pos_text(p: &PosEncoding) -> String {
    match p {
        PosEncoding::Rope {
            rotate_fraction,
            base,
        } => {
            format!("rope(base={base:?}, rotate_fraction={rotate_fraction:?})")
        }
        PosEncoding::Xl => "xl".to_string(),
    }
}

/// The text name of an attention variant.
pub fn variant_text(v: AttentionVariant) -> &'static str {
    match v {
        AttentionVariant::ExpertsVO => "experts_vo",
        AttentionVariant::Gated => "gated",
        AttentionVariant::Dense => "dense",
    }
}
