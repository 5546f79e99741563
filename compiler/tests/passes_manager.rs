//! The pass manager: ordered pipeline, verification after each pass, errors naming the pass,
//! `print_after` / `stop_after`; the whole pipeline keeps every testdata model's numbers.

mod ir_util;

use anyhow::Result;
use ir_util::{MODELS, assert_close_outputs, assert_same_outputs, golden_chunks, inputs, load};
use switchhead_compiler::ir::interp::run;
use switchhead_compiler::ir::{Graph, lower, parse, print};
use switchhead_compiler::passes::{
    Changed, ConstFold, DeadCode, InferShapes, MergeProjections, Pass, PassError, PassManager,
    PipelineError, RunOptions, pass_names,
};

#[test]
fn pipeline_order() {
    assert_eq!(
        pass_names(),
        [
            "infer-shapes",
            "const-fold",
            "fold-layernorm",
            "merge-projections",
            "dead-code"
        ]
    );
    assert_eq!(PassManager::default().names(), pass_names());
}

/// Every pass but `fold-layernorm` (`merge-projections` included) keeps every output
/// bit-identical; the whole pipeline,
/// whose folded weights are rounded to f32, keeps them to 1e-5 relative.
#[test]
fn pipeline_keeps_numbers_on_every_model() -> Result<()> {
    for model in MODELS {
        let m = load(model)?;
        let before = lower(&m);
        let mut exact = before.clone();
        let passes: Vec<Box<dyn Pass>> = vec![
            Box::new(InferShapes),
            Box::new(ConstFold),
            Box::new(MergeProjections),
            Box::new(DeadCode),
        ];
        PassManager::new(passes).run(&mut exact, RunOptions::default())?;
        let mut after = before.clone();
        PassManager::default().run(&mut after, RunOptions::default())?;
        for file in ["golden_short", "golden_long"] {
            for chunk in golden_chunks(model, file)? {
                let ins = inputs(&before, &chunk.tokens, chunk.batch, None);
                let want = run(&before, &m.weights, &ins)?;
                assert_same_outputs(&run(&exact, &m.weights, &ins)?, &want);
                assert_close_outputs(&run(&after, &m.weights, &ins)?, &want, 1e-5);
            }
        }
    }
    Ok(())
}

#[test]
fn gated_after_pipeline() -> Result<()> {
    let mut g = lower(&load("gated")?);
    PassManager::default().run(&mut g, RunOptions::default())?;
    insta::assert_snapshot!("pipeline_gated_after", print(&g));
    Ok(())
}

#[test]
fn stop_after_and_print_after() -> Result<()> {
    let mut g = lower(&load("gated")?);
    let mut printed = Vec::new();
    let mut printer = |pass: &str, text: &str| printed.push((pass.to_string(), text.to_string()));
    let opts = RunOptions {
        print_after: Some("infer-shapes".into()),
        stop_after: Some("const-fold".into()),
        printer: Some(&mut printer),
    };
    let ran = PassManager::default().run(&mut g, opts)?;
    assert_eq!(
        ran,
        [("infer-shapes", Changed::Yes), ("const-fold", Changed::No)]
    );
    assert_eq!(printed.len(), 1);
    assert_eq!(printed[0].0, "infer-shapes");
    assert_eq!(parse(&printed[0].1)?, parse(&print(&g))?);
    Ok(())
}

#[test]
fn unknown_pass_lists_valid_names() {
    let mut g = Graph::default();
    let opts = RunOptions {
        stop_after: Some("cse".into()),
        ..RunOptions::default()
    };
    let err = PassManager::default().run(&mut g, opts).unwrap_err();
    assert!(matches!(err, PipelineError::UnknownPass { .. }));
    assert_eq!(
        err.to_string(),
        "unknown pass `cse`; valid passes: infer-shapes, const-fold, fold-layernorm, merge-projections, dead-code"
    );
}

#[test]
fn pass_errors_name_the_pass() {
    let text = "input %0 = \"x\": f32[B,T,4]\n%1 = weight f32[3,4] @ \"w\"\n%2 = Add(%0, %1)  # bad\noutput \"y\" = %2\n";
    let mut g = parse(text).unwrap();
    g.values[1].fact = None;
    let mut g2 = g.clone();
    let err = PassManager::default()
        .run(&mut g, RunOptions::default())
        .unwrap_err();
    assert!(
        matches!(
            &err,
            PipelineError::Pass { pass: "infer-shapes", source }
                if matches!(**source, PassError::MissingFact { .. })
        ),
        "{err}"
    );
    assert!(
        err.to_string().starts_with("pass infer-shapes: node `bad`"),
        "{err}"
    );
    // The same graph with the weight's fact: the input graph itself fails to verify.
    g2.values[1].fact = parse(text).unwrap().values[1].fact.clone();
    let err = PassManager::default()
        .run(&mut g2, RunOptions::default())
        .unwrap_err();
    assert!(matches!(err, PipelineError::InvalidInput(_)), "{err}");
}

/// A pass that breaks the graph: the manager's verification catches it and names it.
struct Breaker;

impl Pass for Breaker {
    fn name(&self) -> &'static str {
        "breaker"
    }
    fn run(&self, g: &mut Graph) -> Result<Changed, PassError> {
        g.nodes[0] = None;
        Ok(Changed::Yes)
    }
}

#[test]
fn verify_after_each_pass() {
    let mut g = parse("input %0 = \"x\": f32[2]\n%1 = Relu(%0)  # r\noutput \"y\" = %1\n").unwrap();
    let err = PassManager::new(vec![Box::new(Breaker)])
        .run(&mut g, RunOptions::default())
        .unwrap_err();
    assert!(
        matches!(
            err,
            PipelineError::Verify {
                pass: "breaker",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().starts_with("after pass breaker:"), "{err}");
}
