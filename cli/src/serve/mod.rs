//! `switchhead serve`: an HTTP server in the style of OpenAI's completions API, with
//! continuous batching: concurrent requests share decode steps, joining and leaving between
//! them ([`batch`]), on a thread that owns the model ([`engine`]); the async side
//! ([`routes`], [`completions`]) never waits on compute except through channels.

mod batch;
mod command;
mod completions;
mod engine;
mod error;
mod limits;
mod metrics;
mod request;
mod routes;
mod text;

pub use command::{Args, run};
pub use error::ApiError;
pub use limits::Limits;
/// The checked body of `POST /v1/completions` (public for the fuzz target).
pub use request::{CompletionRequest, Prompt, Sampling, parse as parse_request};
