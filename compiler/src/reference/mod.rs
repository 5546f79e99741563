//! The reference executor: runs an imported [`Model`](crate::Model) end to end with the plain
//! reference ops of `switchhead-ops`, one sequence at a time. It is the oracle the compiled
//! backends are checked against, so it favours clarity (f32 storage, f64 accumulation).

mod error;
mod executor;
mod layer;
mod tokens;

pub use error::ExecError;
pub use executor::{Forward, LayerRouting, ReferenceExecutor};
pub use tokens::{Memory, Tokens};
