//! A small node-list builder: fresh deterministic value names, node and attribute helpers,
//! and constants as `Constant` nodes (so the same code builds graph and function bodies;
//! function bodies cannot hold initializers).
//!
//! Names are `{prefix}{hint}_{n}` with a per-builder counter, so the output depends only on
//! the order of calls.

use super::proto::{AttributeProto, NodeProto, TensorProto, attribute_type, data_type};

/// Collects nodes under a name prefix.
#[derive(Debug, Default)]
pub struct Builder {
    prefix: String,
    counter: usize,
    /// The nodes built so far, in topological order.
    pub nodes: Vec<NodeProto>,
}

impl Builder {
    /// A builder whose value and node names start with `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Builder {
            prefix: prefix.into(),
            counter: 0,
            nodes: Vec::new(),
        }
    }

    /// A fresh value name.
    pub fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("{}{}_{}", self.prefix, hint, self.counter)
    }

    /// Adds a node with one fresh output; returns the output name.
    pub fn op(&mut self, op_type: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        self.op_n(op_type, inputs, attrs, 1).remove(0)
    }

    /// Adds a node with `n` fresh outputs.
    pub fn op_n(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
        n: usize,
    ) -> Vec<String> {
        let outputs: Vec<String> = (0..n).map(|_| self.fresh(op_type)).collect();
        self.op_to(op_type, "", inputs, attrs, outputs.clone());
        outputs
    }

    /// Adds a node in `domain` writing the given outputs.
    pub fn op_to(
        &mut self,
        op_type: &str,
        domain: &str,
        inputs: &[&str],
        attribute: Vec<AttributeProto>,
        output: Vec<String>,
    ) {
        let name = format!("{}n{}", self.prefix, self.nodes.len());
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output,
            name,
            op_type: op_type.into(),
            domain: domain.into(),
            attribute,
            doc_string: String::new(),
        });
    }

    /// A `Constant` node holding `t`.
    pub fn constant(&mut self, t: TensorProto) -> String {
        self.op("Constant", &[], vec![attr_tensor("value", t)])
    }

    /// 1-D int64 constant.
    pub fn ints(&mut self, v: &[i64]) -> String {
        self.constant(tensor_i64(v, &[v.len() as i64]))
    }

    /// 0-D int64 constant.
    pub fn scalar_i64(&mut self, v: i64) -> String {
        self.constant(tensor_i64(&[v], &[]))
    }

    /// 0-D f32 constant.
    pub fn scalar_f32(&mut self, v: f32) -> String {
        self.constant(tensor_f32(&[v], &[]))
    }

    /// 1-D f64 constant.
    pub fn doubles(&mut self, v: &[f64]) -> String {
        let t = TensorProto {
            dims: vec![v.len() as i64],
            data_type: data_type::DOUBLE,
            double_data: v.to_vec(),
            ..Default::default()
        };
        self.constant(t)
    }
}

/// An int64 tensor.
pub fn tensor_i64(v: &[i64], dims: &[i64]) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type: data_type::INT64,
        int64_data: v.to_vec(),
        ..Default::default()
    }
}

/// An f32 tensor.
pub fn tensor_f32(v: &[f32], dims: &[i64]) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type: data_type::FLOAT,
        float_data: v.to_vec(),
        ..Default::default()
    }
}

/// An int attribute.
pub fn attr_i(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INT,
        i,
        ..Default::default()
    }
}

/// A float attribute.
pub fn attr_f(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::FLOAT,
        f,
        ..Default::default()
    }
}

/// A string attribute.
pub fn attr_s(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::STRING,
        s: s.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// An ints attribute.
pub fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INTS,
        ints: ints.to_vec(),
        ..Default::default()
    }
}

/// A tensor attribute.
pub fn attr_tensor(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::TENSOR,
        t: Some(t),
        ..Default::default()
    }
}
