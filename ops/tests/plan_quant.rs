//! Quantized weights (`i8` / `i4`, format version 3): quantize/dequantize round trips on odd
//! shapes, the stored bytes where the module doc says, and the reader's refusals of a
//! quantized weight whose group, layout, nbytes or version is wrong.

use switchhead_ops::op::Op;
use switchhead_ops::plan::{
    PlanDType, PlanGraph, PlanInput, PlanLayout, PlanMeta, PlanNode, PlanOp, PlanOutput,
    PlanWeight, QuantBits, QuantShape, dequantize, layout_weights, quant_parts, quantize,
    read_plan, write_plan,
};

const BITS: [QuantBits; 2] = [QuantBits::Int8, QuantBits::Int4];

fn shape(count: usize, out: usize, inp: usize, group: usize) -> QuantShape {
    QuantShape {
        count,
        out,
        inp,
        group,
    }
}

/// Deterministic values in -1..1 with varied magnitudes per row.
fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let unit = (x >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0;
            unit * (1.0 + (i % 7) as f32)
        })
        .collect()
}

#[test]
fn round_trip_error_is_bounded_on_odd_shapes() {
    let shapes = [
        shape(1, 1, 1, 1),
        shape(1, 3, 5, 32),
        shape(2, 5, 33, 32),
        shape(3, 4, 7, 3),
        shape(1, 2, 130, 64),
        shape(2, 3, 129, 128),
    ];
    for bits in BITS {
        for (k, s) in shapes.into_iter().enumerate() {
            let w = values(s.count * s.out * s.inp, k as u32);
            let bytes = quantize(bits, &w, s);
            assert_eq!(bytes.len(), s.nbytes(bits), "{bits:?} {s:?}");
            let back = dequantize(bits, &bytes, s).expect("dequantize");
            let (_, scales) = quant_parts(bits, &bytes, s).expect("parts");
            assert_eq!(scales.len(), s.count * s.out * s.groups());
            // int8: round to nearest at max/127 (half a step); int4 (searched and refit
            // scales): within one and a half steps of plain max/7 rounding
            for (i, (&a, &b)) in w.iter().zip(&back).enumerate() {
                let (row, col) = (i / s.inp, i % s.inp);
                let g0 = row * s.inp + col / s.group * s.group;
                let group = &w[g0..g0 + s.group.min(s.inp - col / s.group * s.group)];
                let amax = group.iter().fold(0f32, |m, v| m.max(v.abs()));
                let scale = scales[row * s.groups() + col / s.group];
                let bound = match bits {
                    QuantBits::Int8 => scale * 0.5,
                    QuantBits::Int4 => amax / 7.0 * 1.5,
                };
                assert!(
                    (a - b).abs() <= bound + 1e-6,
                    "{bits:?} {s:?} element {i}: {a} -> {b} (scale {scale})"
                );
            }
            if bits == QuantBits::Int8 {
                // the largest |w| of each group is exact (q = ±max)
                let max = w[..s.inp.min(s.group)]
                    .iter()
                    .fold(0f32, |m, v| m.max(v.abs()));
                let at = w.iter().position(|v| v.abs() == max).expect("max");
                assert!((back[at] - w[at]).abs() <= max * 1e-6, "{bits:?} {s:?}");
            } else {
                // the search never does worse than plain max/7 rounding, group by group
                let (err, plain) = group_errors(&w, &back, s);
                for (g, (e, p)) in err.iter().zip(&plain).enumerate() {
                    assert!(
                        e <= &(p * (1.0 + 1e-5) + 1e-12),
                        "{s:?} group {g}: {e} > {p}"
                    );
                }
            }
        }
    }
}

/// Per group of every row: the squared error of `back`, and that of rounding at max|w| / 7.
fn group_errors(w: &[f32], back: &[f32], s: QuantShape) -> (Vec<f64>, Vec<f64>) {
    let (mut err, mut plain) = (Vec::new(), Vec::new());
    for (row, got) in w.chunks(s.inp).zip(back.chunks(s.inp)) {
        for (g, b) in row.chunks(s.group).zip(got.chunks(s.group)) {
            let amax = g.iter().fold(0f32, |m, v| m.max(v.abs()));
            let step = amax / 7.0;
            let rtn = |v: f32| {
                if step > 0.0 {
                    (v / step).round().clamp(-7.0, 7.0) * step
                } else {
                    0.0
                }
            };
            err.push(
                g.iter()
                    .zip(b)
                    .map(|(&a, &b)| ((a - b) as f64).powi(2))
                    .sum(),
            );
            plain.push(g.iter().map(|&a| ((a - rtn(a)) as f64).powi(2)).sum());
        }
    }
    (err, plain)
}

#[test]
fn int4_odd_rows_pack_nibbles_and_pad() {
    // 2 rows of 3, one group each: q = [1, -2, 7], [-7, 7, 0] (scales 1)
    let s = shape(1, 2, 3, 4);
    let w = [1.0, -2.0, 7.0, -7.0, 7.0, 0.0];
    let b = quantize(QuantBits::Int4, &w, s);
    assert_eq!(s.value_bytes(QuantBits::Int4), 4);
    assert_eq!(b.len(), 4 + 2 * 4);
    assert_eq!(&b[..4], &[0xE1, 0x07, 0x79, 0x00]);
    let back = dequantize(QuantBits::Int4, &b, s).expect("dequantize");
    assert_eq!(back, w);
}

#[test]
fn int8_values_then_padding_then_scales() {
    let s = shape(1, 1, 5, 2); // 3 groups: [2, 2, 1]
    let w = [0.25, -1.0, 254.0, 127.0, -3.0];
    let b = quantize(QuantBits::Int8, &w, s);
    assert_eq!(b.len(), 8 + 3 * 4);
    let q = [32i8, -127, 127, 64, -127]; // 127 / 2 = 63.5 rounds away from zero
    assert_eq!(&b[..5], &q.map(|v| v as u8));
    assert_eq!(&b[5..8], &[0, 0, 0]);
    let (values, scales) = quant_parts(QuantBits::Int8, &b, s).expect("parts");
    assert_eq!(values.len(), 5);
    assert_eq!(scales, vec![1.0 / 127.0, 2.0, 3.0 / 127.0]);
}

#[test]
fn zero_groups_have_scale_zero_and_dequantize_to_zero() {
    for bits in BITS {
        let s = shape(2, 2, 6, 3);
        let mut w = vec![0f32; 24];
        w[4] = -0.25; // one nonzero group in row 0
        let b = quantize(bits, &w, s);
        let (_, scales) = quant_parts(bits, &b, s).expect("parts");
        let nonzero: Vec<usize> = (0..scales.len()).filter(|&i| scales[i] != 0.0).collect();
        assert_eq!(nonzero, vec![1], "{bits:?} {scales:?}");
        assert_eq!(dequantize(bits, &b, s).expect("dequantize"), w);
    }
}

#[test]
fn wrong_lengths_and_group_zero_are_errors() {
    let s = shape(1, 2, 5, 4);
    for bits in BITS {
        let b = quantize(bits, &values(10, 3), s);
        for len in [0, b.len() - 1] {
            let err = dequantize(bits, &b[..len], s).expect_err("short");
            assert!(err.to_string().contains("expected"), "{err}");
        }
        let err = dequantize(bits, &b, QuantShape { group: 0, ..s }).expect_err("group 0");
        assert!(err.to_string().contains("group 0"), "{err}");
        let huge = shape(usize::MAX / 2, 4, 8, 1);
        assert!(huge.checked_nbytes(bits).is_none());
        assert!(dequantize(bits, &b, huge).is_err());
    }
}

/// tokens -> Embedding(table f32 [3, 5]) -> Linear(w [2, 5], quantized as `bits`) = logits,
/// with the stored bytes of each weight.
fn tiny(bits: QuantBits, group: usize) -> (PlanGraph, Vec<Vec<u8>>) {
    let table = values(15, 1);
    let w = values(10, 2);
    let s = shape(1, 2, 5, group);
    let data = vec![
        table.iter().flat_map(|v| v.to_le_bytes()).collect(),
        quantize(bits, &w, s),
    ];
    let mut weights = vec![
        PlanWeight {
            name: "table".into(),
            value: 1,
            dtype: PlanDType::F32,
            shape: vec![3, 5],
            layout: PlanLayout::RowMajor,
            group: None,
            offset: 0,
            nbytes: 60,
        },
        PlanWeight {
            name: "w".into(),
            value: 2,
            dtype: bits.dtype(),
            shape: vec![2, 5],
            layout: PlanLayout::RowMajor,
            group: Some(group as u64),
            offset: 0,
            nbytes: s.nbytes(bits) as u64,
        },
    ];
    layout_weights(&mut weights);
    let node = |name: &str, op: &Op, inputs: Vec<u32>, out| PlanNode {
        name: name.into(),
        op: PlanOp::from(op),
        inputs,
        outputs: vec![out],
    };
    let graph = PlanGraph {
        producer: "test".into(),
        n_values: 5,
        inputs: vec![PlanInput {
            name: "tokens".into(),
            value: 0,
            dtype: PlanDType::I64,
        }],
        outputs: vec![PlanOutput {
            name: "logits".into(),
            value: 4,
        }],
        weights,
        nodes: vec![
            node("embedding", &Op::Embedding, vec![0, 1], 3),
            node("output", &Op::Linear { bias: false }, vec![3, 2], 4),
        ],
        meta: PlanMeta {
            d_model: 5,
            vocab_size: 3,
            n_layers: 0,
            chunk_size: None,
        },
    };
    (graph, data)
}

fn bytes_of(graph: &PlanGraph, data: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut next = data.iter();
    write_plan(&mut out, graph, |w, sink| match next.next() {
        // a weight whose nbytes was edited gets that many bytes (zero padded / cut)
        Some(d) => sink.write_all(&resized(d, w.nbytes as usize)),
        None => Err(std::io::Error::other("more weights than data")),
    })
    .expect("write");
    out
}

fn resized(d: &[u8], len: usize) -> Vec<u8> {
    let mut d = d.to_vec();
    d.resize(len, 0);
    d
}

/// The message `read_plan` refuses `graph` with (written as given, weights re-laid out).
fn refusal(mut graph: PlanGraph, data: &[Vec<u8>]) -> String {
    layout_weights(&mut graph.weights);
    read_plan(&bytes_of(&graph, data))
        .expect_err("refused")
        .to_string()
}

#[test]
fn quantized_plan_round_trips_as_version_3() {
    for (bits, group) in [
        (QuantBits::Int8, 5),
        (QuantBits::Int4, 32),
        (QuantBits::Int4, 2),
    ] {
        let (graph, data) = tiny(bits, group);
        let bytes = bytes_of(&graph, &data);
        let plan = read_plan(&bytes).expect("read");
        assert_eq!(plan.header.version, 3);
        assert_eq!(plan.graph, graph);
        let w = &plan.graph.weights[1];
        let (b, s) = w.quant().expect("quantized");
        assert_eq!((b, s), (bits, shape(1, 2, 5, group)));
        assert_eq!(plan.weight_bytes(w), &data[1][..]);
        let json = String::from_utf8_lossy(&bytes[64..64 + plan.header.graph_len as usize]);
        let dtype = format!(
            r#""dtype":"{}""#,
            ["i8", "i4"][(bits == QuantBits::Int4) as usize]
        );
        assert!(json.contains(&dtype), "{json}");
        assert!(json.contains(&format!(r#""group":{group}"#)), "{json}");
        assert_eq!(
            json.matches("group").count(),
            1,
            "f32 weights have no group"
        );
    }
}

#[test]
fn group_is_required_for_quantized_and_refused_for_others() {
    let (graph, data) = tiny(QuantBits::Int4, 32);
    let mut g = graph.clone();
    g.weights[1].group = None;
    let msg = refusal(g, &data);
    assert!(
        msg.contains("\"w\"") && msg.contains("no \"group\""),
        "{msg}"
    );
    let mut g = graph.clone();
    g.weights[1].group = Some(0);
    let msg = refusal(g, &data);
    assert!(msg.contains("\"w\"") && msg.contains("group 0"), "{msg}");
    let mut g = graph.clone();
    g.weights[0].group = Some(32);
    let msg = refusal(g, &data);
    assert!(
        msg.contains("\"table\"") && msg.contains("only for i8/i4"),
        "{msg}"
    );
}

#[test]
fn bad_nbytes_is_refused() {
    let (graph, data) = tiny(QuantBits::Int8, 5);
    for nbytes in [data[1].len() as u64 - 4, data[1].len() as u64 + 4] {
        let mut g = graph.clone();
        g.weights[1].nbytes = nbytes;
        let msg = refusal(g, &data);
        assert!(
            msg.contains("\"w\"") && msg.contains("does not match"),
            "{msg}"
        );
    }
    // a different group changes the scale count, so the same bytes no longer fit
    let mut g = graph.clone();
    g.weights[1].group = Some(1);
    let msg = refusal(g, &data);
    assert!(msg.contains("expected"), "{msg}");
}

#[test]
fn panels_layout_and_rank_1_are_refused_for_quantized() {
    let (graph, data) = tiny(QuantBits::Int4, 32);
    let mut g = graph.clone();
    g.weights[1].layout = PlanLayout::Panels;
    let msg = refusal(g, &data);
    assert!(msg.contains("row_major only"), "{msg}");
    let mut g = graph.clone();
    g.weights[1].shape = vec![10];
    let msg = refusal(g, &data);
    assert!(msg.contains("[out, in] or [E, in, out]"), "{msg}");
}

#[test]
fn huge_quantized_claims_are_refused() {
    let (graph, data) = tiny(QuantBits::Int4, 32);
    for (shape, group) in [(vec![1 << 40, 1 << 40], 1), (vec![1 << 62, 4, 4], 1)] {
        let mut g = graph.clone();
        g.weights[1].shape = shape;
        g.weights[1].group = Some(group);
        let msg = refusal(g, &data);
        assert!(msg.contains("\"w\""), "{msg}");
    }
}

#[test]
fn quantized_weights_in_a_version_2_file_are_refused() {
    let (graph, data) = tiny(QuantBits::Int8, 5);
    let mut bytes = bytes_of(&graph, &data);
    bytes[8] = 2;
    let body = bytes.len() - 8;
    let crc = u64::from(crc32(&bytes[..body]));
    bytes[body..].copy_from_slice(&crc.to_le_bytes());
    let msg = read_plan(&bytes).expect_err("v2").to_string();
    assert!(
        msg.contains("version 2") && msg.contains("quantized"),
        "{msg}"
    );
}

/// CRC-32 (IEEE), bitwise.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}
