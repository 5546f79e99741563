//! The IR interpreter: evaluates a [`Graph`] with the reference ops of `switchhead-ops`.
//!
//! It is the semantic oracle for passes (a pass must not change what it computes). Values are
//! f32 tensors with a leading batch axis, except i64 token ids. Ops that work per sequence
//! (`Embedding`, `ConcatSeq`, `MoEAttention`) run per batch row; row-wise ops run on the whole
//! tensor. Weights are read (widened to f32) from a [`Weights`] store by name on first use.
//! The graph must verify; evaluation follows node order.

use switchhead_ops::attention::softmax;
use switchhead_ops::embedding::embedding;
use switchhead_ops::ffn::{dense_ffn, relu_in_place};
use switchhead_ops::layer_norm::layer_norm;
use switchhead_ops::linear::linear;
use switchhead_ops::moe_attention::{
    AttentionLayer, Positions, ValueOutput, moe_attention, split_merged,
};
use switchhead_ops::op::{AttentionVariant, Merge, MoeAttentionAttrs, Op, PosEncoding};
use switchhead_ops::rope::Rope;
use switchhead_ops::sigma_moe::sigma_moe;
use switchhead_ops::{OpError, Tensor};

use super::graph::{Graph, Node, ValueDef, ValueId};
use super::verify::{VerifyError, verify};
use crate::error::ImportError;
use crate::model::Weights;

/// A graph input value.
#[derive(Debug, Clone, PartialEq)]
pub enum InterpValue {
    /// Token ids, row-major with `shape` (`[B, T]`).
    Tokens { shape: Vec<usize>, ids: Vec<i64> },
    /// An f32 tensor.
    F32(Tensor),
}

/// What stopped evaluation.
#[derive(Debug, thiserror::Error)]
pub enum InterpError {
    /// The graph does not verify.
    #[error("invalid graph: {0}")]
    Invalid(Box<VerifyError>),
    /// A graph input was not given.
    #[error("graph input `{name}` not given")]
    MissingInput { name: String },
    /// A given input is not a graph input.
    #[error("`{name}` is not a graph input")]
    UnknownInput { name: String },
    /// A weight could not be read.
    #[error("weight `{name}`: {source}")]
    Weight {
        name: String,
        source: Box<ImportError>,
    },
    /// An op got a value of the wrong kind (tokens vs f32) or an unsupported form.
    #[error("node `{node}`: {reason}")]
    Unsupported { node: String, reason: String },
    /// A reference op failed.
    #[error("node `{node}`: {source}")]
    Op { node: String, source: OpError },
}

/// Evaluates `g`; returns the graph outputs by name, in interface order.
pub fn run(
    g: &Graph,
    weights: &Weights,
    inputs: &[(String, InterpValue)],
) -> Result<Vec<(String, Tensor)>, InterpError> {
    verify(g).map_err(|e| InterpError::Invalid(Box::new(e)))?;
    let weights =
        &super::derived::materialize(g, weights).map_err(|source| InterpError::Weight {
            name: "(derived)".into(),
            source: Box::new(source),
        })?;
    let mut env: Vec<Option<InterpValue>> = vec![None; g.values.len()];
    bind_inputs(g, inputs, &mut env)?;
    for (_, node) in g.live_nodes() {
        for &v in &node.inputs {
            load_weight(g, weights, v, &mut env)?;
        }
        let args: Vec<&InterpValue> = node
            .inputs
            .iter()
            .filter_map(|v| env[v.0 as usize].as_ref())
            .collect();
        let out = eval(node, &args).map_err(|source| InterpError::Op {
            node: node.name.clone(),
            source,
        })?;
        env[node.outputs[0].0 as usize] = Some(InterpValue::F32(out));
    }
    g.outputs
        .iter()
        .map(|(name, v)| output(g, weights, name, *v, &mut env))
        .collect()
}

fn bind_inputs(
    g: &Graph,
    inputs: &[(String, InterpValue)],
    env: &mut [Option<InterpValue>],
) -> Result<(), InterpError> {
    for (name, value) in inputs {
        let id = g
            .inputs
            .iter()
            .find(|v| g.value(**v).def == ValueDef::Input(name.clone()));
        let id = id.ok_or_else(|| InterpError::UnknownInput { name: name.clone() })?;
        env[id.0 as usize] = Some(value.clone());
    }
    for v in &g.inputs {
        if env[v.0 as usize].is_none() {
            let name = match &g.value(*v).def {
                ValueDef::Input(n) => n.clone(),
                other => format!("{other:?}"),
            };
            return Err(InterpError::MissingInput { name });
        }
    }
    Ok(())
}

fn load_weight(
    g: &Graph,
    weights: &Weights,
    v: ValueId,
    env: &mut [Option<InterpValue>],
) -> Result<(), InterpError> {
    if let (ValueDef::Weight(name), None) = (&g.value(v).def, &env[v.0 as usize]) {
        let t = weights.tensor(name).map_err(|source| InterpError::Weight {
            name: name.clone(),
            source: Box::new(source),
        })?;
        env[v.0 as usize] = Some(InterpValue::F32(t));
    }
    Ok(())
}

fn output(
    g: &Graph,
    weights: &Weights,
    name: &str,
    v: ValueId,
    env: &mut [Option<InterpValue>],
) -> Result<(String, Tensor), InterpError> {
    load_weight(g, weights, v, env)?;
    match &env[v.0 as usize] {
        Some(InterpValue::F32(t)) => Ok((name.to_string(), t.clone())),
        _ => Err(InterpError::Unsupported {
            node: name.to_string(),
            reason: "graph output is not an f32 value".into(),
        }),
    }
}

fn f32_arg<'a>(args: &[&'a InterpValue], i: usize) -> Result<&'a Tensor, OpError> {
    match args.get(i) {
        Some(InterpValue::F32(t)) => Ok(t),
        _ => Err(OpError::Shape {
            what: format!("input {i}"),
            expected: "an f32 tensor".into(),
            got: "token ids".into(),
        }),
    }
}

fn eval(node: &Node, args: &[&InterpValue]) -> Result<Tensor, OpError> {
    let t = |i| f32_arg(args, i);
    match &node.op {
        Op::Embedding => embed(args, t(1)?),
        Op::LayerNorm { eps } => layer_norm(t(0)?, t(1)?, t(2)?, *eps),
        Op::Linear { bias } => linear(t(0)?, t(1)?, if *bias { Some(t(2)?) } else { None }),
        Op::Add => add(t(0)?, t(1)?),
        Op::Relu => {
            let mut x = t(0)?.clone();
            relu_in_place(&mut x);
            Ok(x)
        }
        Op::Softmax { axis } => softmax_last(t(0)?, *axis),
        Op::ConcatSeq => per_batch2(t(0)?, t(1)?, concat_rows),
        Op::DenseFfn => dense_ffn(t(0)?, t(1)?, t(2)?, t(3)?, t(4)?),
        Op::MoEAttention(a) => attention(a, args),
        Op::SigmaMoe(a) => {
            let x = t(0)?;
            let flat = x.clone().reshape(vec![x.rows(), x.last_dim()])?;
            let (y, _) = sigma_moe(&flat, t(1)?, t(2)?, t(3)?, a.k)?;
            y.reshape(x.shape().to_vec())
        }
    }
}

fn embed(args: &[&InterpValue], table: &Tensor) -> Result<Tensor, OpError> {
    let Some(InterpValue::Tokens { shape, ids }) = args.first() else {
        return Err(OpError::Shape {
            what: "embedding tokens".into(),
            expected: "i64 token ids".into(),
            got: "f32".into(),
        });
    };
    let (b, t) = match shape[..] {
        [b, t] if b * t == ids.len() => (b, t),
        _ => {
            return Err(OpError::Shape {
                what: "embedding tokens".into(),
                expected: "[B, T]".into(),
                got: format!("{shape:?}"),
            });
        }
    };
    let rows = (0..b)
        .map(|i| embedding(table, &ids[i * t..(i + 1) * t]))
        .collect::<Result<Vec<_>, _>>()?;
    stack(rows)
}

fn add(a: &Tensor, b: &Tensor) -> Result<Tensor, OpError> {
    b.expect_shape("add b", a.shape())?;
    let data = a.data().iter().zip(b.data()).map(|(x, y)| x + y).collect();
    Tensor::new(a.shape().to_vec(), data)
}

fn softmax_last(x: &Tensor, axis: i64) -> Result<Tensor, OpError> {
    let rank = x.shape().len() as i64;
    if axis != -1 && axis != rank - 1 {
        let reason = format!("the interpreter supports only the last axis, got {axis}");
        return Err(OpError::Attribute {
            op: "Softmax",
            attr: "axis",
            reason,
        });
    }
    let mut out = Vec::with_capacity(x.data().len());
    for r in 0..x.rows() {
        let row: Vec<f64> = x.row(r).iter().map(|&v| v as f64).collect();
        out.extend(softmax(&row).into_iter().map(|v| v as f32));
    }
    Tensor::new(x.shape().to_vec(), out)
}

/// Splits `[B, ..]` into B tensors of shape `[..]`.
fn unbatch(x: &Tensor) -> Result<Vec<Tensor>, OpError> {
    let (&b, rest) = x.shape().split_first().ok_or_else(|| OpError::Shape {
        what: "batched value".into(),
        expected: "rank >= 1".into(),
        got: "a scalar".into(),
    })?;
    let n: usize = rest.iter().product();
    (0..b)
        .map(|i| Tensor::new(rest.to_vec(), x.data()[i * n..(i + 1) * n].to_vec()))
        .collect()
}

/// Stacks equal-shape tensors on a new leading axis.
fn stack(parts: Vec<Tensor>) -> Result<Tensor, OpError> {
    let inner = parts.first().map_or_else(Vec::new, |p| p.shape().to_vec());
    let mut shape = vec![parts.len()];
    shape.extend(&inner);
    let data = parts.into_iter().flat_map(Tensor::into_data).collect();
    Tensor::new(shape, data)
}

fn per_batch2(
    a: &Tensor,
    b: &Tensor,
    f: impl Fn(&Tensor, &Tensor) -> Result<Tensor, OpError>,
) -> Result<Tensor, OpError> {
    let (xs, ys) = (unbatch(a)?, unbatch(b)?);
    if xs.len() != ys.len() {
        return Err(OpError::Shape {
            what: "batch".into(),
            expected: format!("{}", xs.len()),
            got: format!("{}", ys.len()),
        });
    }
    stack(
        xs.iter()
            .zip(&ys)
            .map(|(x, y)| f(x, y))
            .collect::<Result<_, _>>()?,
    )
}

fn concat_rows(a: &Tensor, b: &Tensor) -> Result<Tensor, OpError> {
    let d = b.last_dim();
    a.expect_shape("concat a", &[a.data().len() / d.max(1), d])?;
    let mut data = a.data().to_vec();
    data.extend_from_slice(b.data());
    Tensor::new(vec![a.rows() + b.rows(), d], data)
}

fn attention(a: &MoeAttentionAttrs, args: &[&InterpValue]) -> Result<Tensor, OpError> {
    let t = |i| f32_arg(args, i);
    let rope = match a.pos {
        PosEncoding::Rope {
            rotate_fraction,
            base,
        } => Some(Rope::new(a.d_head, rotate_fraction, base)?),
        PosEncoding::Xl => None,
    };
    let s = a.slots();
    // The merged `qkr` split back into its blocks (the reference reads them separately).
    let split = match a.merged {
        Merge::All => split_merged(&[t(s.q)?], a.merged, a.merged_blocks())?,
        Merge::Sides => split_merged(&[t(s.q)?, t(s.k)?], a.merged, a.merged_blocks())?,
        Merge::None => Default::default(),
    };
    let [q, k, sel_v, sel_o] = match a.merged {
        Merge::None => [Some(s.q), Some(s.k), s.sel_v, s.sel_o].map(|i| i.map(t).transpose()),
        _ => split.each_ref().map(Option::as_ref).map(Ok),
    };
    let missing = |what: &str| OpError::Shape {
        what: format!("moe_attention {what}"),
        expected: "an input for this variant".into(),
        got: "none".into(),
    };
    let (sel_v, sel_o) = (sel_v?, sel_o?);
    let value_output = match a.variant {
        AttentionVariant::ExpertsVO => ValueOutput::Experts {
            v: t(s.v)?,
            o: t(s.o)?,
            sel_v: sel_v.ok_or_else(|| missing("sel_v"))?,
            sel_o: sel_o.ok_or_else(|| missing("sel_o"))?,
            k: a.k,
        },
        AttentionVariant::Gated => ValueOutput::Gated {
            v: t(s.v)?,
            o: t(s.o)?,
            sel_o: sel_o.ok_or_else(|| missing("sel_o"))?,
        },
        AttentionVariant::Dense => ValueOutput::Dense {
            v: t(s.v)?,
            o: t(s.o)?,
        },
    };
    let positions = match (&rope, s.pos_to_pk) {
        (Some(r), _) => Positions::Rope(r),
        (None, Some(i)) => Positions::Xl { pos_to_pk: t(i)? },
        (None, None) => return Err(missing("pos_to_pk")),
    };
    let layer = AttentionLayer {
        heads: a.heads,
        d_head: a.d_head,
        q: q?.ok_or_else(|| missing("q"))?,
        k: k?.ok_or_else(|| missing("k"))?,
        value_output,
        positions,
    };
    per_batch2(
        t(0)?,
        t(1)?,
        |xq, xkv| Ok(moe_attention(&layer, xq, xkv)?.y),
    )
}
