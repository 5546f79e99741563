//! A plan whose weight claims huge dimensions is refused by `read_plan` (naming the weight),
//! before anything that size is allocated: the shape's element count is computed with checked
//! arithmetic and must match the bytes the weight declares, which must lie in the file.

use switchhead_ops::op::Op;
use switchhead_ops::plan::{
    PlanDType, PlanError, PlanGraph, PlanInput, PlanMeta, PlanNode, PlanOp, PlanOutput, PlanWeight,
    layout_weights, read_plan, write_plan,
};

/// Embedding then an output projection; the table's shape is replaced by `table_shape` after
/// layout (its bytes stay those of [3, 5]).
fn plan_with(table_shape: Vec<usize>) -> Vec<u8> {
    let w = |name: &str, value, shape: Vec<usize>| PlanWeight {
        name: name.into(),
        value,
        dtype: PlanDType::F32,
        nbytes: 4 * shape.iter().product::<usize>() as u64,
        shape,
        layout: Default::default(),
        offset: 0,
    };
    let mut weights = vec![
        w("table", 1, vec![3, 5]),
        w("w", 2, vec![2, 5]),
        w("b", 3, vec![2]),
    ];
    layout_weights(&mut weights);
    weights[0].shape = table_shape;
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
    let mut out = Vec::new();
    write_plan(&mut out, &graph, |w, sink| {
        sink.write_all(&vec![0; w.nbytes as usize])
    })
    .expect("write");
    out
}

#[test]
fn plan_weight_claiming_2_40_by_2_40_is_refused() {
    let err = read_plan(&plan_with(vec![1 << 40, 1 << 40])).expect_err("huge claimed shape");
    assert!(
        matches!(&err, PlanError::Weight { name, .. } if name == "table"),
        "{err:?}"
    );
}

#[test]
fn plan_weight_claiming_a_shape_beyond_its_bytes_is_refused() {
    let err = read_plan(&plan_with(vec![1 << 20, 5])).expect_err("shape beyond its bytes");
    assert!(err.to_string().contains("does not match shape"), "{err}");
}
