//! ONNX emission: an IR [`crate::ir::Graph`] plus its weights become an ONNX `ModelProto`
//! (our own prost messages, [`proto`]), either with one `ai.switchhead` node per
//! MoEAttention / SigmaMoE layer backed by a model-local function (the default), or with
//! standard opset-17 ops only (`decompose`).

pub mod builder;
pub mod decompose;
pub mod emit;
pub mod proto;
pub mod stream;

pub use decompose::ExpertForm;
pub use emit::{
    DOMAIN, EmitError, EmitOptions, IR_VERSION, OPSET, PLAN_GRAPH_KEY, WeightDType, emit, write,
    write_with_limit,
};
