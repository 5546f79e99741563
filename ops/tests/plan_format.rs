//! The plan format at the byte level: the header layout (a literal snapshot of the bytes the
//! module doc describes), a write/read round trip with 64-byte aligned weights, and the
//! reader's errors on a small in-memory plan.

use switchhead_ops::op::Op;
use switchhead_ops::plan::{
    FORMAT_VERSION, Header, PlanDType, PlanError, PlanGraph, PlanInput, PlanMeta, PlanNode, PlanOp,
    PlanOutput, PlanWeight, layout_weights, read_plan, write_plan,
};

#[test]
fn header_layout_snapshot() {
    let h = Header::new(100, 128);
    #[rustfmt::skip]
    let want: [u8; 64] = [
        0x89, b'S', b'H', b'P', b'L', b'A', b'N', b'\n', // magic
        2, 0, 0, 0,                                      // version
        64, 0, 0, 0,                                     // header_len
        64, 0, 0, 0, 0, 0, 0, 0,                         // graph_offset
        100, 0, 0, 0, 0, 0, 0, 0,                        // graph_len
        192, 0, 0, 0, 0, 0, 0, 0,                        // weights_offset (64 + 100, aligned up)
        128, 0, 0, 0, 0, 0, 0, 0,                        // weights_len
        72, 1, 0, 0, 0, 0, 0, 0,                         // file_len = 192 + 128 + 8 = 328
        0, 0, 0, 0,                                      // flags
        0, 0, 0, 0,                                      // reserved
    ];
    assert_eq!(h.encode(), want);
    assert_eq!(FORMAT_VERSION, 3);
}

/// tokens -> Embedding(table [3, 5]) -> Linear(w [2, 5], b [2]) = logits.
fn tiny() -> (PlanGraph, Vec<Vec<f32>>) {
    let w = |name: &str, value, shape: Vec<usize>| PlanWeight {
        name: name.into(),
        value,
        dtype: PlanDType::F32,
        nbytes: 4 * shape.iter().product::<usize>() as u64,
        shape,
        layout: Default::default(),
        group: None,
        offset: 0,
    };
    let mut weights = vec![
        w("table", 1, vec![3, 5]),
        w("w", 2, vec![2, 5]),
        w("b", 3, vec![2]),
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
        n_values: 6,
        inputs: vec![PlanInput {
            name: "tokens".into(),
            value: 0,
            dtype: PlanDType::I64,
        }],
        outputs: vec![PlanOutput {
            name: "logits".into(),
            value: 5,
        }],
        weights,
        nodes: vec![
            node("embedding", &Op::Embedding, vec![0, 1], 4),
            node("output", &Op::Linear { bias: true }, vec![4, 2, 3], 5),
        ],
        meta: PlanMeta {
            d_model: 5,
            vocab_size: 3,
            n_layers: 0,
            chunk_size: None,
        },
    };
    let data = graph
        .weights
        .iter()
        .map(|w| (0..w.numel()).map(|i| i as f32 * 0.5).collect())
        .collect();
    (graph, data)
}

fn bytes_of(graph: &PlanGraph, data: &[Vec<f32>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut next = data.iter();
    write_plan(&mut out, graph, |_, sink| {
        let d = next.next().expect("one vector per weight");
        sink.write_all(&d.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>())
    })
    .expect("write");
    out
}

#[test]
fn round_trip_with_aligned_weights() {
    let (graph, data) = tiny();
    let bytes = bytes_of(&graph, &data);
    let plan = read_plan(&bytes).expect("read");
    assert_eq!(plan.graph, graph);
    assert_eq!(plan.header.file_len as usize, bytes.len());
    assert_eq!(plan.header.version, 2, "no quantized weight: version 2");
    assert!(plan.header.weights_offset.is_multiple_of(64));
    for (w, d) in graph.weights.iter().zip(&data) {
        assert!(w.offset.is_multiple_of(64), "{} at {}", w.name, w.offset);
        let stored: Vec<f32> = plan
            .weight_bytes(w)
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(&stored, d);
    }
    let json = String::from_utf8(bytes[64..64 + plan.header.graph_len as usize].to_vec()).unwrap();
    assert!(
        json.contains(r#""op":{"type":"Linear","bias":true}"#),
        "{json}"
    );
}

#[test]
fn reader_errors() {
    let (graph, data) = tiny();
    let bytes = bytes_of(&graph, &data);
    assert_eq!(read_plan(b"ONNX....").unwrap_err(), PlanError::NotAPlan);
    assert!(matches!(
        read_plan(&bytes[..bytes.len() - 3]),
        Err(PlanError::Truncated { .. })
    ));
    let mut flipped = bytes.clone();
    flipped[bytes.len() - 20] ^= 1;
    assert!(matches!(
        read_plan(&flipped),
        Err(PlanError::Checksum { .. })
    ));
    let mut future = bytes.clone();
    future[8] = 9;
    assert_eq!(
        read_plan(&future).unwrap_err(),
        PlanError::FutureVersion {
            version: 9,
            supported: FORMAT_VERSION
        }
    );
    let mut unknown = graph.clone();
    unknown.nodes[1].inputs.pop();
    let msg = read_plan(&bytes_of(&unknown, &data))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("has 2 inputs"), "{msg}");
}

/// [`tiny`] with the table's shape replaced by `table_shape` after layout (its bytes stay
/// those of [3, 5]), as a file that claims dimensions it does not hold.
fn tiny_claiming(table_shape: Vec<usize>) -> Vec<u8> {
    let (mut graph, data) = tiny();
    graph.weights[0].shape = table_shape;
    bytes_of(&graph, &data)
}

/// A weight claiming huge dimensions is refused by `read_plan`, naming the weight, before
/// anything that size is allocated: the element count is computed with checked arithmetic
/// and must match the bytes the weight declares, which must lie in the file.
#[test]
fn plan_weight_claiming_2_40_by_2_40_is_refused() {
    let err = read_plan(&tiny_claiming(vec![1 << 40, 1 << 40])).expect_err("huge claimed shape");
    assert!(
        matches!(&err, PlanError::Weight { name, .. } if name == "table"),
        "{err:?}"
    );
}

#[test]
fn plan_weight_claiming_a_shape_beyond_its_bytes_is_refused() {
    let err = read_plan(&tiny_claiming(vec![1 << 20, 5])).expect_err("shape beyond its bytes");
    assert!(err.to_string().contains("does not match shape"), "{err}");
}
