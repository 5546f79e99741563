//! Weight-only quantized initializers (`--quantize int8|int4`): each quantized weight becomes
//! a standard `DequantizeLinear` (opset 21) of two initializers, `{name}.q` (INT8, or INT4
//! packed two per byte, element 2j in the low nibble, as ONNX specifies) and `{name}.scale`
//! (f32), whose output carries the weight's name, so the rest of the graph reads the f32 weight
//! as before and stock ONNX Runtime runs the file.
//!
//! The same weights as a quantized plan, quantized by the same code
//! (`switchhead_ops::plan::quantize`, symmetric, no zero point): every weight of rank 2
//! `[out, in]` or rank 3 `[E, in, out]` that only projection or expert slots read
//! (`crate::plan::quantizable`, the plan's own rule: Linear and dense-FFN weights, every
//! MoEAttention weight, SigmaMoE's router, keys and values); embedding tables,
//! LayerNorm parameters and biases stay float. Groups run along the reduction axis, which is
//! axis 1 in both orientations. Scales, by form:
//! - int8 `[out, in]`: per-axis, `axis = 0`, scale `[out]` (one per output channel);
//! - int8 `[E, in, out]`: blocked, `axis = 1`, `block_size = in`, scale `[E, 1, out]`;
//! - int4: blocked, `axis = 1`, `block_size = group`, scale `[out, ceil(in / group)]` or
//!   `[E, ceil(in / group), out]`.

use std::collections::HashSet;

use switchhead_ops::plan::{QuantBits, QuantShape, quant_parts, quantize};

use super::builder::{Builder, attr_i};
use super::emit::EmitError;
use super::proto::{NodeProto, TensorProto, data_type};
use crate::ir::{Graph, ValueId};
use crate::model::Weights;
use crate::plan::quantizable;

/// The default-domain opset of a file with quantized weights (`DequantizeLinear` with
/// `block_size` and INT4 need 21).
pub const QUANT_OPSET: i64 = 21;
/// The ONNX IR version of a file with quantized weights (INT4 needs 10).
pub const QUANT_IR_VERSION: i64 = 10;

/// `TensorProto.DataType` codes of the quantized values.
const INT8: i32 = 3;
const INT4: i32 = 22;

/// How to quantize the weights of an ONNX file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnnxQuant {
    /// int8 (one scale per output channel) or int4 (one per `group` reduction elements).
    pub bits: QuantBits,
    /// int4 group length (32, 64 or 128); ignored for int8.
    pub group: usize,
}

impl OnnxQuant {
    /// The `switchhead.quantize` metadata value: `int8`, or `int4:{group}`.
    pub fn label(&self) -> String {
        match self.bits {
            QuantBits::Int8 => "int8".into(),
            QuantBits::Int4 => format!("int4:{}", self.group),
        }
    }
}

/// The weights a quantized file stores quantized (see the module doc).
pub fn quantized_weights(graph: &Graph, weights: &Weights) -> HashSet<ValueId> {
    let mut projected = HashSet::new();
    let mut other = HashSet::new();
    for (_, node) in graph.live_nodes() {
        for (slot, &v) in node.inputs.iter().enumerate() {
            if graph.weight_name(v).is_none() {
                continue;
            }
            match quantizable(&node.op, slot) {
                true => projected.insert(v),
                false => other.insert(v),
            };
        }
    }
    let rank = |v: &ValueId| {
        let info = graph.weight_name(*v).and_then(|n| weights.info(n));
        info.map(|i| i.shape.len())
    };
    projected
        .into_iter()
        .filter(|v| !other.contains(v) && matches!(rank(v), Some(2 | 3)))
        .collect()
}

/// The quantized storage of weight `name` (`shape` `[out, in]` or `[E, in, out]`, `data`
/// row-major): its two initializers, and the `DequantizeLinear` node writing `name`.
pub fn quantized_initializers(
    name: &str,
    shape: &[usize],
    data: &[f32],
    q: OnnxQuant,
) -> Result<(Vec<TensorProto>, NodeProto), EmitError> {
    let unsupported = |reason: String| EmitError::Unsupported {
        op: format!("quantized weight {name:?}"),
        reason,
    };
    let (count, inp, out) = match *shape {
        [out, inp] => (1, inp, out),
        [e, inp, out] => (e, inp, out),
        _ => return Err(unsupported(format!("shape {shape:?} is not rank 2 or 3"))),
    };
    if inp == 0 || data.len() != count * inp * out {
        return Err(unsupported(format!(
            "{} elements for {shape:?}",
            data.len()
        )));
    }
    let group = match q.bits {
        QuantBits::Int8 => inp,
        QuantBits::Int4 => q.group.max(1),
    };
    let s = QuantShape {
        count,
        out,
        inp,
        group,
    };
    let rows = match shape.len() {
        2 => data.to_vec(),
        _ => transpose_each(data, count, inp, out),
    };
    let stored = quantize(q.bits, &rows, s);
    let (values, scales) =
        quant_parts(q.bits, &stored, s).map_err(|e| unsupported(e.to_string()))?;
    let mut values = unpack(q.bits, values, s);
    let (scales, scale_dims) = match shape.len() {
        2 if q.bits == QuantBits::Int8 => (scales, vec![out as i64]),
        2 => (scales, vec![out as i64, s.groups() as i64]),
        _ => {
            values = transpose_each(&values, count, out, inp);
            let dims = vec![count as i64, s.groups() as i64, out as i64];
            (transpose_each(&scales, count, out, s.groups()), dims)
        }
    };
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    let q_name = format!("{name}.q");
    let scale_name = format!("{name}.scale");
    let (code, raw) = encode(q.bits, &values);
    let inits = vec![
        tensor(&q_name, code, dims, raw),
        tensor(
            &scale_name,
            data_type::FLOAT,
            scale_dims,
            f32_bytes(&scales),
        ),
    ];
    let mut attrs = vec![attr_i(
        "axis",
        i64::from(shape.len() != 2 || q.bits != QuantBits::Int8),
    )];
    if shape.len() == 3 || q.bits == QuantBits::Int4 {
        attrs.push(attr_i("block_size", group as i64));
    }
    let mut b = Builder::new(format!("{name}/"));
    b.op_to(
        "DequantizeLinear",
        "",
        &[&q_name, &scale_name],
        attrs,
        vec![name.to_string()],
    );
    Ok((inits, b.nodes.remove(0)))
}

/// Each of `count` row-major `[rows, cols]` matrices transposed to `[cols, rows]`.
fn transpose_each<T: Copy>(data: &[T], count: usize, rows: usize, cols: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(data.len());
    for m in data.chunks_exact(rows * cols).take(count) {
        out.extend((0..cols).flat_map(|c| (0..rows).map(move |r| m[r * cols + c])));
    }
    out
}

/// The signed values of stored rows (`quant_parts`' values), row-major `[count, out, inp]`.
fn unpack(bits: QuantBits, values: &[u8], s: QuantShape) -> Vec<i8> {
    match bits {
        QuantBits::Int8 => values.iter().map(|&v| v as i8).collect(),
        QuantBits::Int4 => values
            .chunks_exact(s.inp.div_ceil(2))
            .flat_map(|row| (0..s.inp).map(|i| nibble(row[i / 2], i % 2)))
            .collect(),
    }
}

/// The low (`half` 0) or high nibble of `byte`, sign-extended.
fn nibble(byte: u8, half: usize) -> i8 {
    (((byte >> (4 * half)) << 4) as i8) >> 4
}

/// ONNX bytes of `values` (INT4: two per byte over the flat tensor, the first in the low
/// nibble; an odd count's last high nibble 0) and their data type.
fn encode(bits: QuantBits, values: &[i8]) -> (i32, Vec<u8>) {
    match bits {
        QuantBits::Int8 => (INT8, values.iter().map(|&v| v as u8).collect()),
        QuantBits::Int4 => (
            INT4,
            values
                .chunks(2)
                .map(|p| (p[0] as u8 & 0x0F) | (p.get(1).map_or(0, |&v| v as u8 & 0x0F) << 4))
                .collect(),
        ),
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn tensor(name: &str, data_type: i32, dims: Vec<i64>, raw_data: Vec<u8>) -> TensorProto {
    TensorProto {
        dims,
        data_type,
        name: name.into(),
        raw_data,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(bits: QuantBits, group: usize) -> OnnxQuant {
        OnnxQuant { bits, group }
    }

    /// ONNX's DequantizeLinear of the two initializers, by the spec's formula.
    fn onnx_dequantize(inits: &[TensorProto], node: &NodeProto) -> Vec<f32> {
        let (x, s) = (&inits[0], &inits[1]);
        let n: usize = x.dims.iter().product::<i64>() as usize;
        let vals: Vec<i8> = match x.data_type {
            INT8 => x.raw_data.iter().map(|&v| v as i8).collect(),
            _ => (0..n).map(|i| nibble(x.raw_data[i / 2], i % 2)).collect(),
        };
        let scales: Vec<f32> = s
            .raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let attr = |k: &str| node.attribute.iter().find(|a| a.name == k).map(|a| a.i);
        let axis = attr("axis").unwrap_or(1) as usize;
        let block = attr("block_size").unwrap_or(0) as usize;
        let dims: Vec<usize> = x.dims.iter().map(|&d| d as usize).collect();
        let sdims: Vec<usize> = s.dims.iter().map(|&d| d as usize).collect();
        (0..n)
            .map(|i| {
                let mut idx = Vec::new();
                let mut r = i;
                for d in dims.iter().rev() {
                    idx.push(r % d);
                    r /= d;
                }
                idx.reverse();
                let si = match block {
                    0 => idx[axis],
                    b => {
                        idx[axis] /= b;
                        idx.iter().zip(&sdims).fold(0, |acc, (&j, &d)| acc * d + j)
                    }
                };
                f32::from(vals[i]) * scales[si]
            })
            .collect()
    }

    fn plan_dequantize(bits: QuantBits, w: &[f32], s: QuantShape) -> Vec<f32> {
        let b = quantize(bits, w, s);
        switchhead_ops::plan::dequantize(bits, &b, s).expect("dequantize")
    }

    fn weights(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect()
    }

    #[test]
    fn rank2_dequantizes_to_the_plans_values() {
        let (out, inp) = (5, 70);
        let w = weights(out * inp);
        for (bits, group, want_group) in [(QuantBits::Int8, 0, inp), (QuantBits::Int4, 32, 32)] {
            let (inits, node) =
                quantized_initializers("w", &[out, inp], &w, q(bits, group)).expect("quantize");
            let s = QuantShape {
                count: 1,
                out,
                inp,
                group: want_group,
            };
            assert_eq!(onnx_dequantize(&inits, &node), plan_dequantize(bits, &w, s));
        }
    }

    #[test]
    fn rank3_experts_dequantize_to_the_plans_transposes() {
        let (e, inp, out) = (3, 40, 7);
        let w = weights(e * inp * out);
        for (bits, group) in [(QuantBits::Int8, inp), (QuantBits::Int4, 32)] {
            let (inits, node) =
                quantized_initializers("w", &[e, inp, out], &w, q(bits, group)).expect("quantize");
            let s = QuantShape {
                count: e,
                out,
                inp,
                group,
            };
            let plan = plan_dequantize(bits, &transpose_each(&w, e, inp, out), s);
            let got = onnx_dequantize(&inits, &node);
            assert_eq!(transpose_each(&got, e, inp, out), plan);
        }
    }
}
