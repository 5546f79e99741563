//! The reference executor's input checks: clear errors, never a panic.

use std::path::Path;

use switchhead_compiler::import::{LoadOptions, load_model};
use switchhead_compiler::reference::{ExecError, Memory, ReferenceExecutor, Tokens};
use switchhead_ops::Tensor;

fn executor(model: &str) -> ReferenceExecutor {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/models")
        .join(model);
    let model = load_model(&path, &LoadOptions::default()).expect("testdata model loads");
    ReferenceExecutor::new(&model).expect("executor")
}

#[test]
fn empty_and_malformed_token_batches_are_rejected() {
    assert!(matches!(
        Tokens::new(1, 0, vec![]),
        Err(ExecError::EmptyInput { .. })
    ));
    assert!(matches!(
        Tokens::new(2, 3, vec![1; 5]),
        Err(ExecError::Tokens { .. })
    ));
}

#[test]
fn out_of_vocabulary_tokens_are_named() {
    let exec = executor("xl");
    let tokens = Tokens::new(2, 2, vec![1, 2, 3, -4]).expect("tokens");
    let err = exec.forward(&tokens, None).expect_err("negative id");
    assert!(
        matches!(
            err,
            ExecError::TokenOutOfRange {
                id: -4,
                batch: 1,
                position: 1,
                vocab: 256
            }
        ),
        "{err}"
    );
}

#[test]
fn memory_of_the_wrong_shape_is_rejected() {
    let exec = executor("xl");
    let tokens = Tokens::new(1, 4, vec![65, 66, 67, 68]).expect("tokens");
    let good = exec.forward(&tokens, None).expect("forward").memory;
    assert_eq!(good.layers[0].shape(), &[1, 4, 120]);
    let wrong_width = Memory {
        layers: vec![Tensor::zeros(vec![1, 4, 119]); 3],
    };
    assert!(
        exec.forward(&tokens, Some(&wrong_width))
            .expect_err("width")
            .to_string()
            .contains("[1, 4, 120]")
    );
    let wrong_layers = Memory {
        layers: good.layers[..2].to_vec(),
    };
    assert!(
        exec.forward(&tokens, Some(&wrong_layers))
            .expect_err("layers")
            .to_string()
            .contains("2 layers")
    );
    let wrong_batch = Tokens::new(2, 4, vec![65; 8]).expect("tokens");
    assert!(
        exec.forward(&wrong_batch, Some(&good)).is_err(),
        "batch 2 with a batch-1 memory"
    );
    // The right memory works and changes the result.
    let with = exec.forward(&tokens, Some(&good)).expect("with memory");
    let without = exec.forward(&tokens, None).expect("without memory");
    assert_ne!(with.logits, without.logits);
}
