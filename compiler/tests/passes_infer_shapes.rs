//! `infer-shapes`: fills every value's fact, with symbolic dims (`M+T` for concatenations).

mod ir_util;

use anyhow::Result;
use ir_util::{assert_same_outputs, golden_chunks, inputs, load, random_tensor, random_weights};
use switchhead_compiler::ir::interp::{InterpValue, run};
use switchhead_compiler::ir::{Dim, Graph, lower, parse, print};
use switchhead_compiler::passes::{Changed, InferShapes, Pass, PassError};

const FIXTURE: &str = r#"input %0 = "tokens": i64[B,T]
input %1 = "memory.0": f32[B,M,8]
%2 = weight f32[16,8] @ "emb"
%3 = weight f32[8] @ "ln.w"
%4 = weight f32[8] @ "ln.b"
%5 = weight f32[5,8] @ "proj.w"
%6 = weight f32[5] @ "proj.b"
%7 = Embedding(%0, %2)  # embedding
%8 = LayerNorm[eps=1e-5](%7, %3, %4)  # norm
%9 = LayerNorm[eps=1e-5](%1, %3, %4)  # norm_memory
%10 = ConcatSeq(%9, %8)  # kv
%11 = Linear[bias=true](%10, %5, %6)  # proj
output "y" = %11
"#;

/// Every value a live node or output uses or defines has a fact.
fn all_facts(g: &Graph) -> bool {
    let used = g
        .live_nodes()
        .flat_map(|(_, n)| n.inputs.iter().chain(&n.outputs));
    used.chain(g.outputs.iter().map(|(_, v)| v))
        .all(|v| g.value(*v).fact.is_some())
}

#[test]
fn fixture_before_after() {
    let mut g = parse(FIXTURE).unwrap();
    insta::assert_snapshot!("infer_shapes_before", print(&g));
    assert_eq!(InferShapes.run(&mut g).unwrap(), Changed::Yes);
    insta::assert_snapshot!("infer_shapes_after", print(&g));
    assert!(all_facts(&g));
    let y = g.outputs[0].1;
    let shape = &g.value(y).fact.as_ref().unwrap().shape;
    assert_eq!(
        shape,
        &[Dim::Sym("B".into()), Dim::Sym("M+T".into()), Dim::Known(5)]
    );
    assert_eq!(InferShapes.run(&mut g).unwrap(), Changed::No);
}

#[test]
fn every_model_gets_every_fact_and_same_numbers() -> Result<()> {
    for model in ir_util::MODELS {
        let m = load(model)?;
        let before = lower(&m);
        let mut after = before.clone();
        InferShapes.run(&mut after)?;
        assert!(all_facts(&after), "{model}");
        let chunk = &golden_chunks(model, "golden_short")?[0];
        let ins = inputs(&before, &chunk.tokens, chunk.batch, None);
        assert_same_outputs(
            &run(&before, &m.weights, &ins)?,
            &run(&after, &m.weights, &ins)?,
        );
    }
    Ok(())
}

#[test]
fn fixture_same_numbers() {
    let before = parse(FIXTURE).unwrap();
    let mut after = before.clone();
    InferShapes.run(&mut after).unwrap();
    let w = random_weights(&before, 1);
    let ins = vec![
        (
            "tokens".to_string(),
            InterpValue::Tokens {
                shape: vec![2, 3],
                ids: vec![1, 2, 3, 4, 5, 15],
            },
        ),
        (
            "memory.0".to_string(),
            InterpValue::F32(random_tensor(vec![2, 4, 8], 2)),
        ),
    ];
    let (a, b) = (
        run(&before, &w, &ins).unwrap(),
        run(&after, &w, &ins).unwrap(),
    );
    assert_eq!(a[0].1.shape(), &[2, 7, 5]);
    assert_same_outputs(&a, &b);
}

#[test]
fn missing_weight_fact_is_an_error() {
    let text = FIXTURE.replace("%5 = weight f32[5,8]", "%5 = weight ?");
    let mut g = parse(&text).unwrap();
    match InferShapes.run(&mut g) {
        Err(PassError::MissingFact { node, input, line }) => {
            assert_eq!((node.as_str(), input), ("proj", 1));
            assert!(line.starts_with("%11 = Linear"), "{line}");
        }
        other => panic!("{other:?}"),
    }
}
