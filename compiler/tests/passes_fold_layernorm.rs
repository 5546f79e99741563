//! `fold-layernorm`: LayerNorm gains and biases folded into the `Linear` / `DenseFfn` that
//! read them, as derived weights; left alone where a consumer has no bias or the LayerNorm's
//! output is a graph output.

mod ir_util;

use ir_util::{assert_close_outputs, assert_text_round_trip, random_tensor, random_weights};
use switchhead_compiler::ir::interp::{InterpValue, run};
use switchhead_compiler::ir::{Recipe, materialize, parse, print, verify};
use switchhead_compiler::passes::{Changed, FoldLayerNorm, Pass};

/// norm1 feeds a biased Linear and a DenseFfn (folded); norm2 feeds a bias-free Linear (kept);
/// norm3 is a graph output itself (kept).
const FIXTURE: &str = r#"input %0 = "x": f32[B,T,4]
%1 = weight f32[4] @ "n1.g"
%2 = weight f32[4] @ "n1.b"
%3 = weight f32[3,4] @ "a.w"
%4 = weight f32[3] @ "a.b"
%5 = weight f32[6,4] @ "f.w1"
%6 = weight f32[6] @ "f.b1"
%7 = weight f32[4,6] @ "f.w2"
%8 = weight f32[4] @ "f.b2"
%9 = weight f32[4] @ "n2.g"
%10 = weight f32[4] @ "n2.b"
%11 = weight f32[2,4] @ "c.w"
%12 = LayerNorm[eps=1e-5](%0, %1, %2) : f32[B,T,4]  # norm1
%13 = Linear[bias=true](%12, %3, %4) : f32[B,T,3]  # a
%14 = DenseFfn(%12, %5, %6, %7, %8) : f32[B,T,4]  # ffn
%15 = LayerNorm[eps=1e-5](%14, %9, %10) : f32[B,T,4]  # norm2
%16 = Linear[bias=false](%15, %11) : f32[B,T,2]  # c
%17 = LayerNorm[eps=1e-5](%14, %9, %10) : f32[B,T,4]  # norm3
%18 = Linear[bias=true](%17, %3, %4) : f32[B,T,3]  # d
output "a" = %13
output "c" = %16
output "n3" = %17
output "d" = %18
"#;

#[test]
fn fixture_before_after() {
    let mut g = parse(FIXTURE).unwrap();
    assert_eq!(FoldLayerNorm.run(&mut g).unwrap(), Changed::Yes);
    insta::assert_snapshot!("fold_layernorm_after", print(&g));
    verify(&g).unwrap();
    // norm1's consumers read derived weights; norm2 and norm3 keep theirs
    assert_eq!(
        g.derived.get("a.w.fold(n1.g)"),
        Some(&Recipe::ScaleInputs {
            weight: "a.w".into(),
            gain: "n1.g".into()
        })
    );
    assert_eq!(g.derived.len(), 6, "{:?}", g.derived.keys());
    // folded LayerNorms are not folded again
    assert_eq!(FoldLayerNorm.run(&mut g).unwrap(), Changed::No);
    assert_text_round_trip(&g);
}

#[test]
fn fixture_same_numbers() {
    let before = parse(FIXTURE).unwrap();
    let mut after = before.clone();
    FoldLayerNorm.run(&mut after).unwrap();
    // gains and biases far from 1 and 0, so a wrong fold shows
    let w = random_weights(&before, 5);
    let ins = vec![(
        "x".to_string(),
        InterpValue::F32(random_tensor(vec![2, 3, 4], 6)),
    )];
    let want = run(&before, &w, &ins).unwrap();
    let got = run(&after, &w, &ins).unwrap();
    assert_close_outputs(&got, &want, 1e-5);
    // what emission sees: the derived weights computed next to the originals
    let all = materialize(&after, &w).unwrap();
    let unit = all.tensor("n1.g.unit").unwrap();
    assert_eq!(unit.data(), &[1.0; 4]);
    assert!(all.tensor("f.b1.fold(n1.b)").is_ok());
}

#[test]
fn bad_recipes_are_rejected() {
    let text = "%0 = weight f32[4] @ \"u\" = ones(4)\n";
    let err = parse(text).unwrap_err().to_string();
    assert!(err.contains("unknown recipe `ones`"), "{err}");
    let text = "%0 = weight f32[4] @ \"u\" = fill(one, 4)\n";
    let err = parse(text).unwrap_err().to_string();
    assert!(err.contains("bad fill value"), "{err}");
    // a recipe naming a weight the store lacks: a clear error naming it
    let g = parse("%0 = weight f32[2,4] @ \"w2\" = scale_inputs(\"w\", \"g\")\n%1 = Relu(%0)  # r\noutput \"y\" = %1\n").unwrap();
    let err = materialize(&g, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing tensor w"), "{err}");
}
