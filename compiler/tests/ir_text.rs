//! The canonical text form: round-trips through the parser on every testdata model and on
//! hand-written fixtures; parse errors carry line and column.

mod ir_util;

use anyhow::Result;
use ir_util::{MODELS, load};
use switchhead_compiler::ir::{lower, parse, print, verify};
use switchhead_compiler::passes::{InferShapes, Pass};

fn roundtrip(text: &str) {
    let g = parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(print(&g), text);
}

#[test]
fn testdata_models_round_trip() -> Result<()> {
    for model in MODELS {
        let mut g = lower(&load(model)?);
        let text = print(&g);
        let back = parse(&text)?;
        assert_eq!(print(&back), text, "{model}");
        verify(&back)?;
        InferShapes.run(&mut g)?;
        roundtrip(&print(&g));
    }
    Ok(())
}

#[test]
fn gated_lowered_text() -> Result<()> {
    let g = lower(&load("gated")?);
    assert_eq!(g.to_string(), print(&g));
    insta::assert_snapshot!("gated_lowered", print(&g));
    Ok(())
}

const FIXTURE: &str = r#"input %0 = "tokens": i64[B,T]
input %1 = "memory.0": f32[B,M,8]
%2 = weight f32[16,8] @ "emb \"quoted\"\n"
%3 = weight f32[8] @ "ln.w"
%4 = weight f32[8] @ "ln.b"
%5 = weight f32[4,8] @ "router"
%6 = weight f32[4,8,2] @ "keys"
%7 = weight f32[4,2,8] @ "values"
%8 = weight ? @ "unused"
%9 = Embedding(%0, %2)  # embedding
%10 = LayerNorm[eps=1e-5](%9, %3, %4) : f32[B,T,8]  # norm
%11 = ConcatSeq(%1, %10) : f32[B,M+T,8]  # kv
%12 = SigmaMoE[expert_size=2, experts=4, k=2](%10, %5, %6, %7)  # ffn
%13 = Softmax[axis=-1](%12) : f32[B,T,8]  # probs
%14 = Relu(%13)  # relu
output "probs" = %14
output "kv" = %11
"#;

#[test]
fn fixture_round_trips() {
    roundtrip(FIXTURE);
    let g = parse(FIXTURE).unwrap();
    assert_eq!(
        g.weight_name(g.nodes[0].as_ref().unwrap().inputs[1]),
        Some("emb \"quoted\"\n")
    );
}

#[test]
fn attention_attributes_round_trip() {
    let text = r#"input %0 = "x": f32[B,T,4]
%1 = weight f32[4,4] @ "q"
%2 = weight f32[4,4] @ "k"
%3 = weight f32[6,4,2] @ "v"
%4 = weight f32[6,2,4] @ "o"
%5 = weight f32[6,4] @ "sel_v"
%6 = weight f32[6,4] @ "sel_o"
%7 = weight f32[4,4] @ "pk"
%8 = MoEAttention[causal=true, d_head=2, experts=3, heads=2, k=2, pos=rope(base=10000.0, rotate_fraction=1.0), variant=experts_vo](%0, %0, %1, %2, %3, %4, %5, %6) : f32[B,T,4]  # a
%9 = MoEAttention[causal=false, d_head=2, experts=3, heads=2, k=1, pos=xl, variant=experts_vo](%8, %0, %1, %2, %3, %4, %5, %6, %7)  # b
%10 = Linear[bias=false](%9, %1)  # c
output "y" = %10
"#;
    roundtrip(text);
    verify(&parse(text).unwrap()).unwrap();
}

#[test]
fn floats_round_trip_exactly() {
    let eps = 0.1f64 + 0.2;
    let text = format!(
        "input %0 = \"x\": f32[2,3]\n%1 = weight f32[3] @ \"w\"\n%2 = LayerNorm[eps={eps:?}](%0, %1, %1)  # n\noutput \"y\" = %2\n"
    );
    roundtrip(&text);
    let g = parse(&text).unwrap();
    let op = &g.nodes[0].as_ref().unwrap().op;
    assert_eq!(op, &switchhead_ops::op::Op::LayerNorm { eps });
}

fn parse_err(text: &str) -> (usize, usize, String) {
    let e = parse(text).unwrap_err();
    (e.line, e.col, e.message)
}

#[test]
fn errors_have_line_and_column() {
    let (l, c, m) = parse_err("input %0 = \"x\": f32[2]\n%1 = Relu(%7)  # r\n");
    assert_eq!((l, c), (2, 11), "{m}");
    assert!(m.contains("%7 used before its definition"), "{m}");

    let (l, c, m) = parse_err("input %0 = \"x\": f32[2]\n\n%1 = Frob(%0)  # r\n");
    assert_eq!((l, c), (3, 6));
    assert!(m.contains("unknown op `Frob`"), "{m}");

    let (l, c, m) = parse_err("input %0 = \"x\": f32[2]\n%1 = Softmax[axis=x](%0)\n");
    assert_eq!((l, c), (2, 19));
    assert!(m.contains("axis"), "{m}");

    let (l, c, m) = parse_err("input %0 = \"x\": f32[2]\ninput %0 = \"y\": f32[2]\n");
    assert_eq!((l, c), (2, 7));
    assert!(m.contains("defined twice"), "{m}");

    let (l, _, m) = parse_err("input %0 = \"x\": q32[2]\n");
    assert_eq!(l, 1);
    assert!(m.contains("unknown dtype"), "{m}");

    let (_, _, m) = parse_err("input %0 = \"x\": f32[2]\n%1 = Relu(%0) extra\n");
    assert!(m.contains("unexpected"), "{m}");

    let (_, _, m) = parse_err("input %0 = \"x\": f32[2]\n%1 = Linear(%0, %0)  # l\n");
    assert!(m.contains("missing attribute `bias`"), "{m}");
}
