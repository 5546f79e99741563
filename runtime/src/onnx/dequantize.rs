//! Quantized weights in an ONNX file (`switchhead-compile --quantize`, or any exporter's
//! weight-only quantization): every default-domain `DequantizeLinear` whose inputs are all
//! initializers is folded, before tract sees the model, into one f32 initializer named as the
//! node's output, so the graph reads the same f32 weight ONNX Runtime computes.
//!
//! Supported, as ONNX (opset 21) defines them: values INT8, UINT8, INT4 or UINT4 (4-bit ones
//! packed two per byte over the flat tensor, the first in the low nibble, or one per
//! `int32_data` entry), f32 scales, an optional zero point of the values' type and the scales'
//! shape; per-tensor (scalar scale), per-axis (`axis`, scale `[dim]`) or blocked (`axis`,
//! `block_size`, scale of the values' rank with `ceil(dim / block_size)` on `axis`).
//! `y = (x - zero_point) * scale` in f32. A node that does not fit is refused naming it; a
//! `DequantizeLinear` of a computed value is left to tract.

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use tract_onnx::pb;

use crate::RuntimeError;

const FLOAT: i32 = 1;
const UINT8: i32 = 2;
const INT8: i32 = 3;
const UINT4: i32 = 21;
const INT4: i32 = 22;
const EXTERNAL: i32 = 1;
const OP: &str = "DequantizeLinear";

/// Folds every constant `DequantizeLinear` of `model`'s main graph (see the module doc);
/// external data is read relative to `dir`. Initializers only folded nodes read are dropped.
pub fn fold_dequantize(model: &mut pb::ModelProto, dir: &Path) -> Result<(), RuntimeError> {
    let Some(graph) = model.graph.as_mut() else {
        return Ok(());
    };
    let (mut folded, mut kept) = (Vec::new(), Vec::new());
    for node in std::mem::take(&mut graph.node) {
        match foldable(&node, &graph.initializer) {
            true => folded.push(dequantize_node(&node, &graph.initializer, dir)?),
            false => kept.push(node),
        }
    }
    if folded.is_empty() {
        graph.node = kept;
        return Ok(());
    }
    let used: HashSet<&str> = kept
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .collect();
    let outputs: HashSet<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    let inits = std::mem::take(&mut graph.initializer);
    graph.initializer = inits
        .into_iter()
        .filter(|t| used.contains(t.name.as_str()) || outputs.contains(t.name.as_str()))
        .chain(folded)
        .collect();
    graph.node = kept;
    Ok(())
}

/// A default-domain `DequantizeLinear` reading initializers only.
fn foldable(node: &pb::NodeProto, inits: &[pb::TensorProto]) -> bool {
    node.op_type == OP
        && matches!(node.domain.as_str(), "" | "ai.onnx")
        && node.input.len() >= 2
        && node
            .input
            .iter()
            .all(|i| i.is_empty() || inits.iter().any(|t| &t.name == i))
}

/// The f32 initializer a constant `DequantizeLinear` computes.
fn dequantize_node(
    node: &pb::NodeProto,
    inits: &[pb::TensorProto],
    dir: &Path,
) -> Result<pb::TensorProto, RuntimeError> {
    let init = |slot: usize| {
        let name = node.input.get(slot).filter(|n| !n.is_empty())?;
        inits.iter().find(|t| &t.name == name)
    };
    let (Some(x), Some(s)) = (init(0), init(1)) else {
        return Err(bad(node, "x", "no initializer".into()));
    };
    let dims: Vec<usize> = dims_of(node, "x", x)?;
    let values = ints(node, "x", x, dir, numel(&dims))?;
    if s.data_type != FLOAT {
        return Err(bad(
            node,
            "x_scale",
            format!("type {} (f32 supported)", s.data_type),
        ));
    }
    let sdims = dims_of(node, "x_scale", s)?;
    let scales = floats(node, s, dir, numel(&sdims))?;
    let zero = match init(2) {
        Some(z) if z.data_type != x.data_type || dims_of(node, "x_zero_point", z)? != sdims => {
            return Err(bad(
                node,
                "x_zero_point",
                "not of x's type and x_scale's shape".into(),
            ));
        }
        Some(z) => ints(node, "x_zero_point", z, dir, scales.len())?,
        None => vec![0; scales.len()],
    };
    let index = scale_index(node, &dims, &sdims)?;
    let y: Vec<u8> = (0..values.len())
        .map(|i| {
            let j = index(i);
            (values[i] - zero[j]) as f32 * scales[j]
        })
        .flat_map(f32::to_le_bytes)
        .collect();
    Ok(pb::TensorProto {
        name: node.output.first().cloned().unwrap_or_default(),
        dims: x.dims.clone(),
        data_type: FLOAT,
        raw_data: y,
        ..Default::default()
    })
}

/// The map from an element's flat index in x to its scale's flat index.
fn scale_index(
    node: &pb::NodeProto,
    dims: &[usize],
    sdims: &[usize],
) -> Result<Box<dyn Fn(usize) -> usize>, RuntimeError> {
    let rank = dims.len() as i64;
    let axis = attr(node, "axis").unwrap_or(1);
    let block = attr(node, "block_size").unwrap_or(0);
    if numel(sdims) == 1 && block == 0 {
        return Ok(Box::new(|_| 0));
    }
    let axis = match axis {
        a if (0..rank).contains(&a) => a as usize,
        a if (-rank..0).contains(&a) => (a + rank) as usize,
        a => return Err(bad(node, "axis", format!("{a} for x of rank {rank}"))),
    };
    let inner: usize = dims[axis + 1..].iter().product();
    let d = dims[axis];
    if block == 0 {
        if sdims != [d] {
            return Err(bad(
                node,
                "x_scale",
                format!("shape {sdims:?}, per-axis wants [{d}]"),
            ));
        }
        return Ok(Box::new(move |i| i / inner % d));
    }
    let b = usize::try_from(block).map_err(|_| bad(node, "block_size", format!("{block}")))?;
    let mut want = dims.to_vec();
    want[axis] = d.div_ceil(b);
    if sdims != want {
        let reason = format!("shape {sdims:?}, blocked by {b} on axis {axis} wants {want:?}");
        return Err(bad(node, "x_scale", reason));
    }
    let groups = want[axis];
    Ok(Box::new(move |i| {
        let (outer, a, rest) = (i / (inner * d), i / inner % d, i % inner);
        (outer * groups + a / b) * inner + rest
    }))
}

fn attr(node: &pb::NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

fn dims_of(
    node: &pb::NodeProto,
    what: &'static str,
    t: &pb::TensorProto,
) -> Result<Vec<usize>, RuntimeError> {
    t.dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| bad(node, what, format!("dims {:?}", t.dims))))
        .collect()
}

fn numel(dims: &[usize]) -> usize {
    dims.iter().product()
}

/// The `n` integer elements of a quantized tensor.
fn ints(
    node: &pb::NodeProto,
    what: &'static str,
    t: &pb::TensorProto,
    dir: &Path,
    n: usize,
) -> Result<Vec<i32>, RuntimeError> {
    let (bits, signed) = match t.data_type {
        INT8 => (8, true),
        UINT8 => (8, false),
        INT4 => (4, true),
        UINT4 => (4, false),
        d => {
            return Err(bad(
                node,
                what,
                format!("type {d} (int8, uint8, int4, uint4 supported)"),
            ));
        }
    };
    if !t.int32_data.is_empty() && t.int32_data.len() == n {
        return Ok(t.int32_data.clone());
    }
    let bytes = payload(node, what, t, dir)?;
    let want = if bits == 8 { n } else { n.div_ceil(2) };
    if bytes.len() != want {
        return Err(bad(
            node,
            what,
            format!("{} bytes for {n} elements, {want} expected", bytes.len()),
        ));
    }
    let element = |i: usize| match bits {
        8 => bytes[i],
        _ => (bytes[i / 2] >> (4 * (i % 2))) & 0x0F,
    };
    let shift = 32 - bits;
    Ok((0..n)
        .map(|i| match signed {
            true => (i32::from(element(i)) << shift) >> shift,
            false => i32::from(element(i)),
        })
        .collect())
}

/// The `n` f32 elements of a scale tensor.
fn floats(
    node: &pb::NodeProto,
    t: &pb::TensorProto,
    dir: &Path,
    n: usize,
) -> Result<Vec<f32>, RuntimeError> {
    if !t.float_data.is_empty() && t.float_data.len() == n {
        return Ok(t.float_data.clone());
    }
    let bytes = payload(node, "x_scale", t, dir)?;
    if bytes.len() != 4 * n {
        return Err(bad(
            node,
            "x_scale",
            format!("{} bytes for {n} f32", bytes.len()),
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// A tensor's `raw_data`, or its external data (relative to `dir`, inside it).
fn payload(
    node: &pb::NodeProto,
    what: &'static str,
    t: &pb::TensorProto,
    dir: &Path,
) -> Result<Vec<u8>, RuntimeError> {
    if t.data_location != Some(EXTERNAL) {
        return Ok(t.raw_data.clone());
    }
    let key = |k: &str| {
        t.external_data
            .iter()
            .find(|e| e.key == k)
            .map(|e| e.value.as_str())
    };
    let err = |reason: String| {
        bad(
            node,
            what,
            format!("external data of {:?}: {reason}", t.name),
        )
    };
    let location = key("location").ok_or_else(|| err("no location".into()))?;
    let relative = Path::new(location);
    if relative.is_absolute() || relative.components().any(|c| c.as_os_str() == "..") {
        return Err(err(format!(
            "location {location:?} is outside the model's folder"
        )));
    }
    let number = |k: &str| match key(k) {
        Some(v) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| err(format!("bad {k} {v:?}"))),
        None => Ok(None),
    };
    let (offset, length) = (number("offset")?.unwrap_or(0), number("length")?);
    let file = dir.join(relative);
    let mut f = std::fs::File::open(&file).map_err(|e| err(format!("{}: {e}", file.display())))?;
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| err(e.to_string()))?;
    let mut bytes = Vec::new();
    match length {
        Some(len) => f.take(len).read_to_end(&mut bytes),
        None => f.read_to_end(&mut bytes),
    }
    .map_err(|e| err(format!("{}: {e}", file.display())))?;
    if length.is_some_and(|len| len != bytes.len() as u64) {
        return Err(err(format!(
            "{} bytes at offset {offset} of {}",
            bytes.len(),
            file.display()
        )));
    }
    Ok(bytes)
}

fn bad(node: &pb::NodeProto, what: &'static str, reason: String) -> RuntimeError {
    RuntimeError::InvalidAttribute {
        node: node.name.clone(),
        op_type: OP,
        attr: what,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(name: &str, data_type: i32, dims: &[i64], raw: Vec<u8>) -> pb::TensorProto {
        pb::TensorProto {
            name: name.into(),
            data_type,
            dims: dims.to_vec(),
            raw_data: raw,
            ..Default::default()
        }
    }

    fn node(attrs: &[(&str, i64)]) -> pb::NodeProto {
        pb::NodeProto {
            name: "w/n0".into(),
            op_type: OP.into(),
            input: vec!["w.q".into(), "w.scale".into()],
            output: vec!["w".into()],
            attribute: attrs
                .iter()
                .map(|(k, i)| pb::AttributeProto {
                    name: k.to_string(),
                    i: *i,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn model(n: pb::NodeProto, inits: Vec<pb::TensorProto>) -> pb::ModelProto {
        pb::ModelProto {
            graph: Some(pb::GraphProto {
                node: vec![n],
                initializer: inits,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn folded(m: &pb::ModelProto) -> Vec<f32> {
        let g = m.graph.as_ref().expect("graph");
        assert!(g.node.is_empty(), "node left");
        assert_eq!(g.initializer.len(), 1, "only the f32 weight is left");
        let t = &g.initializer[0];
        assert_eq!((t.name.as_str(), t.data_type), ("w", FLOAT));
        t.raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn int4_blocked_on_axis_1_of_a_rank3_tensor() {
        // x [1, 3, 2] int4: [[1, -2], [3, -8], [7, 0]], blocks of 2 on axis 1 -> scale [1, 2, 2]
        let q: Vec<i8> = vec![1, -2, 3, -8, 7, 0];
        let packed = q
            .chunks(2)
            .map(|p| (p[0] as u8 & 15) | ((p[1] as u8 & 15) << 4))
            .collect();
        let scales = [1.0, 10.0, 0.5, 0.25];
        let mut m = model(
            node(&[("axis", 1), ("block_size", 2)]),
            vec![
                tensor("w.q", INT4, &[1, 3, 2], packed),
                tensor("w.scale", FLOAT, &[1, 2, 2], f32s(&scales)),
            ],
        );
        fold_dequantize(&mut m, Path::new(".")).expect("fold");
        assert_eq!(folded(&m), vec![1.0, -20.0, 3.0, -80.0, 3.5, 0.0]);
    }

    #[test]
    fn int8_per_axis_0() {
        let q = [1i8, -1, 2, 127];
        let mut m = model(
            node(&[("axis", 0)]),
            vec![
                tensor("w.q", INT8, &[2, 2], q.iter().map(|&v| v as u8).collect()),
                tensor("w.scale", FLOAT, &[2], f32s(&[2.0, 0.5])),
            ],
        );
        fold_dequantize(&mut m, Path::new(".")).expect("fold");
        assert_eq!(folded(&m), vec![2.0, -2.0, 1.0, 63.5]);
    }

    #[test]
    fn a_scale_of_the_wrong_shape_is_refused_naming_the_node() {
        let mut m = model(
            node(&[("axis", 1), ("block_size", 2)]),
            vec![
                tensor("w.q", INT8, &[2, 4], vec![0; 8]),
                tensor("w.scale", FLOAT, &[2, 3], f32s(&[1.0; 6])),
            ],
        );
        let e = fold_dequantize(&mut m, Path::new(".")).expect_err("bad scale shape");
        let msg = e.to_string();
        assert!(msg.contains("w/n0") && msg.contains("[2, 2]"), "{msg}");
    }
}
