//! The graph IR (see `graph` for the invariants), lowering from an imported model, and
//! (in sibling modules) the text form, verifier, passes and interpreter.

pub mod derived;
pub mod graph;
pub mod infer;
pub mod interp;
pub mod lower;
pub mod parse;
pub mod text;
pub mod verify;

pub use derived::{Recipe, materialize};
pub use graph::{DType, Dim, Fact, Graph, Node, NodeId, Value, ValueDef, ValueId};
pub use lower::{attention_attrs, lower};
pub use parse::{ParseError, parse};
pub use text::print;
pub use verify::{VerifyError, verify};
