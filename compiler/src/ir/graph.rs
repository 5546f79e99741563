//! The graph IR: a typed arena of values and nodes.
//!
//! Invariants (checked by `verify`): every node input is a value defined before the node in
//! `nodes` order (graph inputs and weights are defined up front), every value has exactly one
//! definition, node arity matches the op, graph outputs are defined values. Removed nodes are
//! `None` tombstones until `passes::compact` renumbers.

use switchhead_ops::op::Op;

/// Index of a node in [`Graph::nodes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u32);

/// Index of a value in [`Graph::values`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ValueId(pub u32);

/// Element type of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    I64,
}

impl DType {
    /// Lower-case name used by the text form.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I64 => "i64",
        }
    }
}

/// One axis of a shape: a known size or a named symbol (`B`, `T`, `M`, `Tk`...).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    Known(usize),
    Sym(String),
}

/// What is known about a value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fact {
    pub dtype: DType,
    pub shape: Vec<Dim>,
}

/// Where a value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ValueDef {
    /// A graph input, by name.
    Input(String),
    /// A named weight (the bytes live outside the IR).
    Weight(String),
    /// Output `slot` of a node.
    Node(NodeId, u32),
}

/// A value: its definition and, once inferred, its fact.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub def: ValueDef,
    pub fact: Option<Fact>,
}

/// A node: an op applied to values, producing values.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Stable, human-readable name (`layers.0.attn`), used by errors and emission.
    pub name: String,
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
}

/// A whole model graph.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Graph {
    pub values: Vec<Value>,
    pub nodes: Vec<Option<Node>>,
    /// Graph inputs, in interface order.
    pub inputs: Vec<ValueId>,
    /// Named graph outputs, in interface order.
    pub outputs: Vec<(String, ValueId)>,
    /// Weights computed at compile time from other weights, by name ([`super::derived`]).
    pub derived: std::collections::BTreeMap<String, super::derived::Recipe>,
}

impl Graph {
    /// Adds a graph input with a fact.
    pub fn add_input(&mut self, name: &str, fact: Fact) -> ValueId {
        let id = self.push_value(ValueDef::Input(name.into()), Some(fact));
        self.inputs.push(id);
        id
    }

    /// Adds (or reuses) the value of weight `name`.
    pub fn weight(&mut self, name: &str, fact: Fact) -> ValueId {
        let def = ValueDef::Weight(name.into());
        match self.values.iter().position(|v| v.def == def) {
            Some(i) => ValueId(i as u32),
            None => self.push_value(def, Some(fact)),
        }
    }

    /// Appends a node with one output; returns the output value.
    pub fn add_node(&mut self, name: impl Into<String>, op: Op, inputs: Vec<ValueId>) -> ValueId {
        let node = NodeId(self.nodes.len() as u32);
        let out = self.push_value(ValueDef::Node(node, 0), None);
        self.nodes.push(Some(Node {
            name: name.into(),
            op,
            inputs,
            outputs: vec![out],
        }));
        out
    }

    /// Adds (or reuses) the value of a derived weight `name`, computed by `recipe`.
    pub fn derived_weight(
        &mut self,
        name: &str,
        fact: Fact,
        recipe: super::derived::Recipe,
    ) -> ValueId {
        self.derived.insert(name.into(), recipe);
        self.weight(name, fact)
    }

    /// Marks a value as a named graph output.
    pub fn add_output(&mut self, name: &str, value: ValueId) {
        self.outputs.push((name.into(), value));
    }

    /// The value with id `v`.
    pub fn value(&self, v: ValueId) -> &Value {
        &self.values[v.0 as usize]
    }

    /// Live nodes with their ids, in order.
    pub fn live_nodes(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (NodeId(i as u32), n)))
    }

    /// The weight name of `v`, if it is a weight.
    pub fn weight_name(&self, v: ValueId) -> Option<&str> {
        match &self.value(v).def {
            ValueDef::Weight(n) => Some(n),
            _ => None,
        }
    }

    fn push_value(&mut self, def: ValueDef, fact: Option<Fact>) -> ValueId {
        self.values.push(Value { def, fact });
        ValueId(self.values.len() as u32 - 1)
    }
}
