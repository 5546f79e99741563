//! `merge-projections`: q, k and the routers of a self-attention layer stacked into one
//! derived `qkr` weight; where the query and key/value sides differ (XL memory), each side's
//! projections into one (`qo`, `kv`).

mod ir_util;

use ir_util::{assert_same_outputs, assert_text_round_trip, random_tensor, random_weights};
use switchhead_compiler::ir::interp::{InterpValue, run};
use switchhead_compiler::ir::{Recipe, materialize, parse, print, verify};
use switchhead_compiler::passes::{Changed, MergeProjections, Pass};

/// a1: SwitchHead with RoPE on one input (all merged); a2: gated XL with memory, xq != xkv
/// (merged by sides); a3: dense with RoPE (all merged: q and k only).
const FIXTURE: &str = r#"input %0 = "x": f32[B,T,8]
input %1 = "m": f32[B,M,8]
%2 = weight f32[8,8] @ "q"
%3 = weight f32[8,8] @ "k"
%4 = weight f32[6,8,4] @ "ev"
%5 = weight f32[6,4,8] @ "eo"
%6 = weight f32[6,8] @ "sv"
%7 = weight f32[6,8] @ "so"
%8 = weight f32[8,8] @ "v"
%9 = weight f32[8,8] @ "o"
%10 = weight f32[2,8] @ "g"
%11 = weight f32[8,8] @ "pk"
%12 = MoEAttention[causal=true, d_head=4, experts=3, heads=2, k=2, pos=rope(base=10000.0, rotate_fraction=0.5), variant=experts_vo](%0, %0, %2, %3, %4, %5, %6, %7) : f32[B,T,8]  # a1
%13 = ConcatSeq(%1, %12) : f32[B,M+T,8]  # kv
%14 = MoEAttention[causal=true, d_head=4, experts=1, heads=2, k=1, pos=xl, variant=gated](%12, %13, %2, %3, %8, %9, %10, %11) : f32[B,T,8]  # a2
%15 = MoEAttention[causal=true, d_head=4, experts=1, heads=2, k=1, pos=rope(base=10000.0, rotate_fraction=0.5), variant=dense](%14, %14, %2, %3, %8, %9) : f32[B,T,8]  # a3
output "y" = %15
"#;

#[test]
fn fixture_before_after() {
    let mut g = parse(FIXTURE).unwrap();
    assert_eq!(MergeProjections.run(&mut g).unwrap(), Changed::Yes);
    insta::assert_snapshot!("merge_projections_after", print(&g));
    verify(&g).unwrap();
    assert_eq!(
        g.derived.get("a1.qkr"),
        Some(&Recipe::ConcatRows {
            parts: vec!["q".into(), "k".into(), "sv".into(), "so".into()]
        })
    );
    assert_eq!(
        g.derived.get("a3.qkr"),
        Some(&Recipe::ConcatRows {
            parts: vec!["q".into(), "k".into()]
        })
    );
    assert_eq!(
        g.derived.get("a2.qo"),
        Some(&Recipe::ConcatRows {
            parts: vec!["q".into(), "g".into()]
        })
    );
    // the gated variant has no value router: its key side is k itself
    assert_eq!(g.derived.len(), 3, "{:?}", g.derived.keys());
    // merged layers are not merged again
    assert_eq!(MergeProjections.run(&mut g).unwrap(), Changed::No);
    assert_text_round_trip(&g);
}

#[test]
fn fixture_same_numbers() {
    let before = parse(FIXTURE).unwrap();
    let mut after = before.clone();
    MergeProjections.run(&mut after).unwrap();
    let w = random_weights(&before, 7);
    let ins = vec![
        (
            "x".to_string(),
            InterpValue::F32(random_tensor(vec![2, 5, 8], 8)),
        ),
        (
            "m".to_string(),
            InterpValue::F32(random_tensor(vec![2, 3, 8], 9)),
        ),
    ];
    let want = run(&before, &w, &ins).unwrap();
    let got = run(&after, &w, &ins).unwrap();
    // the same dot products, merged or not
    assert_same_outputs(&got, &want);
    let all = materialize(&after, &w).unwrap();
    let qkr = all.tensor("a1.qkr").unwrap();
    assert_eq!(qkr.shape(), &[28, 8]);
    assert_eq!(&qkr.data()[..64], all.tensor("q").unwrap().data());
    let qo = all.tensor("a2.qo").unwrap();
    assert_eq!(qo.shape(), &[10, 8]);
    assert_eq!(&qo.data()[64..], all.tensor("g").unwrap().data());
}

#[test]
fn bad_merges_are_rejected() {
    // an all-merged layer whose inputs are not one value
    let text = FIXTURE.replace(
        "pos=xl, variant=gated](%12, %13, %2, %3, %8, %9, %10, %11)",
        "merged=all, pos=xl, variant=gated](%12, %13, %2, %8, %9, %11)",
    );
    let g = parse(&text).unwrap();
    let err = verify(&g).unwrap_err().to_string();
    assert!(err.contains("a2") && err.contains("xq itself"), "{err}");
    let text = FIXTURE.replace("variant=gated]", "merged=some, variant=gated]");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("unknown merge `some`"), "{err}");
    // parts of different widths: a clear error naming the weight
    let parts = "%0 = weight f32[2,4] @ \"a\"\n%1 = weight f32[2,3] @ \"b\"\n%2 = Add(%0, %1)  # s\noutput \"s\" = %2\n";
    let w = random_weights(&parse(parts).unwrap(), 1);
    let text = "%0 = weight f32[4,4] @ \"ab\" = concat_rows(\"a\", \"b\")\n%1 = Relu(%0)  # r\noutput \"y\" = %1\n";
    let g = parse(text).unwrap();
    let err = materialize(&g, &w).unwrap_err().to_string();
    assert!(err.contains("b has 3 columns"), "{err}");
}
