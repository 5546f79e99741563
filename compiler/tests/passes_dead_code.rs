//! `dead-code`: removes nodes that reach no graph output and compacts the arena.

mod ir_util;

use anyhow::Result;
use ir_util::{assert_same_outputs, golden_chunks, inputs, load, random_tensor, random_weights};
use switchhead_compiler::ir::interp::{InterpValue, run};
use switchhead_compiler::ir::{lower, parse, print, verify};
use switchhead_compiler::passes::dead_code::live_nodes;
use switchhead_compiler::passes::{Changed, DeadCode, Pass};

const FIXTURE: &str = r#"input %0 = "x": f32[B,T,4]
input %1 = "unused_input": f32[B,T,4]
%2 = weight f32[4,4] @ "live.w"
%3 = weight f32[4,4] @ "dead.w"
%4 = weight f32[4] @ "never_used"
%5 = Linear[bias=false](%0, %3)  # dead.proj
%6 = Relu(%5)  # dead.relu
%7 = Linear[bias=false](%0, %2)  # live.proj
%8 = Add(%7, %5)  # dead.add
%9 = Relu(%7)  # live.relu
output "y" = %9
"#;

#[test]
fn fixture_before_after() {
    let mut g = parse(FIXTURE).unwrap();
    insta::assert_snapshot!("dead_code_before", print(&g));
    assert_eq!(DeadCode.run(&mut g).unwrap(), Changed::Yes);
    insta::assert_snapshot!("dead_code_after", print(&g));
    verify(&g).unwrap();
    assert!(
        live_nodes(&g).iter().all(|&l| l),
        "a node reaches no output"
    );
    assert!(g.nodes.iter().all(Option::is_some), "tombstones left");
    assert_eq!(g.nodes.len(), 2);
    assert_eq!(g.inputs.len(), 2, "graph inputs are interface and stay");
    assert_eq!(DeadCode.run(&mut g).unwrap(), Changed::No);
}

#[test]
fn fixture_same_numbers() {
    let before = parse(FIXTURE).unwrap();
    let mut after = before.clone();
    DeadCode.run(&mut after).unwrap();
    let w = random_weights(&before, 3);
    let ins = vec![
        (
            "x".to_string(),
            InterpValue::F32(random_tensor(vec![2, 3, 4], 4)),
        ),
        (
            "unused_input".to_string(),
            InterpValue::F32(random_tensor(vec![2, 3, 4], 5)),
        ),
    ];
    assert_same_outputs(
        &run(&before, &w, &ins).unwrap(),
        &run(&after, &w, &ins).unwrap(),
    );
}

#[test]
fn lowered_models_have_no_dead_code() -> Result<()> {
    for model in ["gated", "xl"] {
        let m = load(model)?;
        let before = lower(&m);
        let mut after = before.clone();
        assert_eq!(DeadCode.run(&mut after)?, Changed::No, "{model}");
        assert_eq!(print(&after), print(&before));
        let chunk = &golden_chunks(model, "golden_short")?[0];
        let ins = inputs(&before, &chunk.tokens, chunk.batch, None);
        assert_same_outputs(
            &run(&before, &m.weights, &ins)?,
            &run(&after, &m.weights, &ins)?,
        );
    }
    Ok(())
}
