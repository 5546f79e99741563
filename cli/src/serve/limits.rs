//! The bounds the server holds every request to (set by `switchhead serve`'s flags).

use std::time::Duration;

/// Limits on requests and on the work waiting for the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Longest prompt, in tokens (400 beyond).
    pub max_prompt_tokens: usize,
    /// Largest `max_tokens` a request may ask for (400 beyond).
    pub max_tokens: usize,
    /// From the request's arrival to its last token (504 beyond; a stream ends with an error
    /// event).
    pub timeout: Duration,
    /// Requests waiting for a place in the batch (429 beyond).
    pub max_queue: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1 << 20,
            max_prompt_tokens: 2048,
            max_tokens: 1024,
            timeout: Duration::from_secs(120),
            max_queue: 256,
        }
    }
}
