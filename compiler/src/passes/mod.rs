//! Graph passes and the pass manager.
//!
//! Each pass is a small struct implementing [`Pass`]; [`default_pipeline`] is the one ordered
//! list; [`PassManager`] runs it, verifying after every pass and naming the pass in errors.
//! Local rewrites are rule functions returning [`rewrite::Patch`], applied by
//! [`rewrite::apply_rules`] after the whole graph was matched.

pub mod compact;
pub mod const_fold;
pub mod dead_code;
pub mod fold_layernorm;
pub mod infer_shapes;
pub mod manager;
pub mod merge_projections;
pub mod rewrite;

use crate::ir::Graph;

pub use compact::compact;
pub use const_fold::ConstFold;
pub use dead_code::DeadCode;
pub use fold_layernorm::FoldLayerNorm;
pub use infer_shapes::InferShapes;
pub use manager::{PassManager, PipelineError, RunOptions};
pub use merge_projections::MergeProjections;

/// Whether a pass changed the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    Yes,
    No,
}

impl Changed {
    /// `Yes` if `b`.
    pub fn from_bool(b: bool) -> Self {
        if b { Changed::Yes } else { Changed::No }
    }
}

/// Why a pass failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PassError {
    /// A node's inputs do not admit an output fact.
    #[error("node `{node}`: {source}\n  at: {line}")]
    Infer {
        node: String,
        line: String,
        source: crate::ir::infer::InferError,
    },
    /// A value a pass needs a fact for has none.
    #[error("node `{node}`: input {input} has no fact\n  at: {line}")]
    MissingFact {
        node: String,
        line: String,
        input: usize,
    },
}

/// One graph transformation.
pub trait Pass {
    /// The pass's name: keys logs, snapshots and `--stop-after`.
    fn name(&self) -> &'static str;
    /// Transforms `g` in place.
    fn run(&self, g: &mut Graph) -> Result<Changed, PassError>;
}

/// The default pipeline, in order.
pub fn default_pipeline() -> Vec<Box<dyn Pass>> {
    vec![
        Box::new(InferShapes),
        Box::new(ConstFold),
        Box::new(FoldLayerNorm),
        Box::new(MergeProjections),
        Box::new(DeadCode),
    ]
}

/// The pipeline of optimization level `level`: 0 runs only `infer-shapes` (the facts every
/// emitter needs), 1 and above the [`default_pipeline`].
pub fn pipeline(level: u8) -> Vec<Box<dyn Pass>> {
    match level {
        0 => vec![Box::new(InferShapes)],
        _ => default_pipeline(),
    }
}

/// Names of the passes of [`default_pipeline`], in order.
pub fn pass_names() -> Vec<&'static str> {
    default_pipeline().iter().map(|p| p.name()).collect()
}
