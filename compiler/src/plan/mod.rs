//! Plan emission: an IR [`crate::ir::Graph`] plus its weights become a `.shplan` file (the
//! format is documented in `switchhead_ops::plan`).

mod emit;
mod quant;

pub use emit::{PlanEmitError, PlanOptions, plan_graph, write_plan_file};
pub use quant::{PlanQuant, quantizable};
