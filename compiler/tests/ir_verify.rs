//! The verifier accepts every lowered model and rejects each broken invariant, naming the node
//! and quoting its text line.

mod ir_util;

use anyhow::Result;
use ir_util::{MODELS, load};
use switchhead_compiler::ir::{Graph, NodeId, VerifyError, lower, parse, verify};
use switchhead_compiler::passes::{InferShapes, Pass};

#[test]
fn lowered_models_verify() -> Result<()> {
    for model in MODELS {
        let mut g = lower(&load(model)?);
        verify(&g)?;
        InferShapes.run(&mut g)?;
        verify(&g)?;
    }
    Ok(())
}

fn node_error(g: &Graph) -> (String, String, String) {
    match verify(g) {
        Err(VerifyError::Node {
            node,
            line,
            problem,
        }) => (node, line, problem),
        other => panic!("expected a node error, got {other:?}"),
    }
}

const HEAD: &str =
    "input %0 = \"x\": f32[B,T,4]\n%1 = weight f32[4,4] @ \"w\"\n%2 = weight f32[4] @ \"b\"\n";

#[test]
fn arity() {
    let g = parse(&format!(
        "{HEAD}%3 = Add(%0)  # bad_add\noutput \"y\" = %3\n"
    ))
    .unwrap();
    let (node, line, problem) = node_error(&g);
    assert_eq!(node, "bad_add");
    assert_eq!(line, "%3 = Add(%0)  # bad_add");
    assert!(problem.contains("Add takes 2 inputs, got 1"), "{problem}");
}

#[test]
fn inconsistent_fact() {
    let g = parse(&format!(
        "{HEAD}%3 = Linear[bias=true](%0, %1, %2) : f32[B,T,5]  # lin\noutput \"y\" = %3\n"
    ))
    .unwrap();
    let (node, _, problem) = node_error(&g);
    assert_eq!(node, "lin");
    assert!(problem.contains("inputs imply f32[B,T,4]"), "{problem}");
}

#[test]
fn weight_shape_against_input() {
    let g = parse(&format!(
        "{HEAD}%3 = LayerNorm[eps=1e-5](%0, %1, %2)  # ln\noutput \"y\" = %3\n"
    ))
    .unwrap();
    let (node, _, problem) = node_error(&g);
    assert_eq!(node, "ln");
    assert!(problem.contains("input 1 (weight)"), "{problem}");
}

#[test]
fn attention_k_above_experts_and_weight_shapes() {
    let attn = |k: usize, v: &str| {
        format!(
            "{HEAD}%3 = weight {v} @ \"v\"\n%4 = weight f32[4,2,4] @ \"o\"\n%5 = weight f32[4,4] @ \"s\"\n\
             %6 = MoEAttention[causal=true, d_head=2, experts=2, heads=2, k={k}, pos=xl, variant=experts_vo](%0, %0, %1, %1, %3, %4, %5, %5, %1)  # attn\noutput \"y\" = %6\n"
        )
    };
    verify(&parse(&attn(2, "f32[4,4,2]")).unwrap()).unwrap();
    let (node, line, problem) = node_error(&parse(&attn(3, "f32[4,4,2]")).unwrap());
    assert_eq!(node, "attn");
    assert!(line.starts_with("%6 = MoEAttention[causal=true"), "{line}");
    assert!(problem.contains("k = 3 must be in 1..=2"), "{problem}");
    let (_, _, problem) = node_error(&parse(&attn(1, "f32[4,2,4]")).unwrap());
    assert!(problem.contains("v [H*E, D, dh]"), "{problem}");
}

#[test]
fn removed_producer_and_use_before_def() {
    let text = format!("{HEAD}%3 = Relu(%0)  # r\n%4 = Relu(%3)  # s\noutput \"y\" = %4\n");
    let mut g = parse(&text).unwrap();
    g.nodes[0] = None;
    let (node, _, problem) = node_error(&g);
    assert_eq!(node, "s");
    assert!(problem.contains("removed node"), "{problem}");

    let mut g = parse(&text).unwrap();
    g.nodes.swap(0, 1);
    assert!(verify(&g).is_err());
}

#[test]
fn value_def_must_point_back() {
    let mut g = parse(&format!("{HEAD}%3 = Relu(%0)  # r\noutput \"y\" = %3\n")).unwrap();
    g.values[3].def = switchhead_compiler::ir::ValueDef::Node(NodeId(0), 1);
    assert!(matches!(verify(&g), Err(VerifyError::Value { .. })));
}

#[test]
fn outputs_must_be_defined_and_unique() {
    let mut g = parse(&format!("{HEAD}%3 = Relu(%0)  # r\noutput \"y\" = %3\n")).unwrap();
    g.nodes[0] = None;
    let err = verify(&g).unwrap_err().to_string();
    assert!(
        err.contains("graph output `y`") && err.contains("removed node"),
        "{err}"
    );
    let g = parse(&format!(
        "{HEAD}%3 = Relu(%0)  # r\noutput \"y\" = %3\noutput \"y\" = %0\n"
    ))
    .unwrap();
    assert!(verify(&g).unwrap_err().to_string().contains("named twice"));
}

#[test]
fn duplicate_weight_and_unlisted_input() {
    let mut g = parse(HEAD).unwrap();
    g.values[2].def = switchhead_compiler::ir::ValueDef::Weight("w".into());
    assert!(
        verify(&g)
            .unwrap_err()
            .to_string()
            .contains("defined twice")
    );
    let mut g = parse(HEAD).unwrap();
    g.inputs.clear();
    assert!(verify(&g).unwrap_err().to_string().contains("not listed"));
}
