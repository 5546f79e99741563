//! `const-fold`: folds what facts alone determine (a concatenation with an empty sequence);
//! leaves nodes over weights alone (the IR holds no tensor bytes).

mod ir_util;

use ir_util::{assert_same_outputs, random_tensor, random_weights};
use switchhead_compiler::ir::interp::{InterpValue, run};
use switchhead_compiler::ir::{Dim, Graph, parse, print, verify};
use switchhead_compiler::passes::{Changed, ConstFold, Pass};
use switchhead_ops::op::Op;

const FIXTURE: &str = r#"input %0 = "x": f32[B,T,4]
input %1 = "memory": f32[B,0,4]
%2 = weight f32[4,4] @ "w"
%3 = ConcatSeq(%1, %0) : f32[B,T,4]  # kv
%4 = Linear[bias=false](%3, %2) : f32[B,T,4]  # proj
output "y" = %4
output "kv" = %3
"#;

fn empty_concats(g: &Graph) -> usize {
    let empty = |v| {
        g.value(v)
            .fact
            .as_ref()
            .is_some_and(|f: &switchhead_compiler::ir::Fact| f.shape.get(1) == Some(&Dim::Known(0)))
    };
    g.live_nodes()
        .filter(|(_, n)| n.op == Op::ConcatSeq && n.inputs.iter().any(|&v| empty(v)))
        .count()
}

#[test]
fn fixture_before_after() {
    let mut g = parse(FIXTURE).unwrap();
    insta::assert_snapshot!("const_fold_before", print(&g));
    assert_eq!(ConstFold.run(&mut g).unwrap(), Changed::Yes);
    insta::assert_snapshot!("const_fold_after", print(&g));
    verify(&g).unwrap();
    assert_eq!(empty_concats(&g), 0);
    assert_eq!(ConstFold.run(&mut g).unwrap(), Changed::No);
}

#[test]
fn fixture_same_numbers() {
    let before = parse(FIXTURE).unwrap();
    let mut after = before.clone();
    ConstFold.run(&mut after).unwrap();
    let w = random_weights(&before, 7);
    let ins = vec![
        (
            "x".to_string(),
            InterpValue::F32(random_tensor(vec![2, 3, 4], 8)),
        ),
        (
            "memory".to_string(),
            InterpValue::F32(random_tensor(vec![2, 0, 4], 9)),
        ),
    ];
    assert_same_outputs(
        &run(&before, &w, &ins).unwrap(),
        &run(&after, &w, &ins).unwrap(),
    );
}

#[test]
fn nodes_over_weights_and_unknown_lengths_stay() {
    let text = "input %0 = \"x\": f32[B,M,4]\n%1 = weight f32[2,3,4] @ \"a\"\n%2 = weight f32[2,3,4] @ \"b\"\n\
                %3 = Add(%1, %2)  # sum\n%4 = ConcatSeq(%0, %3)  # kv\noutput \"y\" = %4\n";
    let mut g = parse(text).unwrap();
    assert_eq!(ConstFold.run(&mut g).unwrap(), Changed::No);
    assert_eq!(print(&g), text);
}
