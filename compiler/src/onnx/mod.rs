//! ONNX emission: an IR [`crate::ir::Graph`] plus its weights become an ONNX `ModelProto`
//! (our own prost messages, [`proto`]), either with one `ai.switchhead` node per
//! MoEAttention / SigmaMoE layer backed by a model-local function (the default), or with
//! standard opset-17 ops only (`decompose`); with quantized weights
//! ([`quantize`]) the default domain is at opset 21 for `DequantizeLinear`.

pub mod builder;
pub mod decompose;
pub mod emit;
pub mod proto;
pub mod quantize;
pub mod stream;

pub use decompose::ExpertForm;
pub use emit::{
    DOMAIN, EmitError, EmitOptions, IR_VERSION, OPSET, PLAN_GRAPH_KEY, WeightDType, emit, write,
    write_with_limit,
};
pub use quantize::OnnxQuant;
