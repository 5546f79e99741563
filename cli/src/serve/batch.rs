//! The engine's loop (continuous batching). Between decode steps, requests waiting in the
//! queue join the batch (up to `max_batch`): each is prefilled alone and its first token
//! sampled from the prompt's logits. Each step then feeds every live sequence its last token
//! in one [`Decoder::step_each`] (one shared pass on the native executor), samples each one's
//! next token with its own seeded sampler and sends the text on. A sequence leaves once it
//! has its `max_tokens`, meets a stop string, or its client has gone. A sequence's tokens do
//! not depend on the others in the batch: `step_each` gives each row the logits it would get
//! alone.

use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::time::Instant;

use axum::http::StatusCode;
use switchhead_runtime::{DecodeStream, Decoder, Session, Tokenizer};

use super::engine::{Event, Finish, Job};
use super::error::ApiError;
use super::metrics::Metrics;
use super::request::{CompletionRequest, Prompt};
use super::text::TextOut;
use crate::sample::Sampler;

/// How the loop batches.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Sequences decoded together at most.
    pub max_batch: usize,
    /// Longest prompt in tokens.
    pub max_prompt_tokens: usize,
    /// RoPE models' context limit (default: the training context the model records).
    pub context: Option<usize>,
}

/// What every sequence shares.
struct Ctx<'s, 't> {
    session: &'s Session,
    tokenizer: &'t Tokenizer,
    metrics: &'s Metrics,
    settings: &'s Settings,
}

/// Runs the batch until the queue's senders are gone and no sequence is left.
pub fn run(
    session: &Session,
    tokenizer: &Tokenizer,
    queue: &Receiver<Job>,
    metrics: &Metrics,
    settings: &Settings,
) {
    let ctx = Ctx {
        session,
        tokenizer,
        metrics,
        settings,
    };
    let mut active: Vec<Sequence<'_, '_>> = Vec::new();
    while admit(&mut active, queue, &ctx) {
        step(&mut active, &ctx);
        active.retain(|s| !s.done);
        metrics.active.store(active.len() as u64, Ordering::Relaxed);
    }
}

/// Takes waiting requests into the batch (blocking while it is empty); false once the queue
/// is closed and the batch empty.
fn admit<'s, 't>(
    active: &mut Vec<Sequence<'s, 't>>,
    queue: &Receiver<Job>,
    ctx: &Ctx<'s, 't>,
) -> bool {
    if active.is_empty() {
        let Ok(job) = queue.recv() else {
            return false;
        };
        join(job, active, ctx);
    }
    while active.len() < ctx.settings.max_batch {
        let Ok(job) = queue.try_recv() else {
            break;
        };
        join(job, active, ctx);
    }
    ctx.metrics
        .active
        .store(active.len() as u64, Ordering::Relaxed);
    true
}

fn join<'s, 't>(job: Job, active: &mut Vec<Sequence<'s, 't>>, ctx: &Ctx<'s, 't>) {
    ctx.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
    if job.events.is_closed() {
        return;
    }
    match Sequence::start(job.request, job.events.clone(), ctx) {
        Ok(mut seq) => {
            seq.advance(ctx.metrics);
            if !seq.done {
                active.push(seq);
            }
        }
        Err(e) => {
            let _ = job.events.send(Event::Failed(e));
        }
    }
}

/// One shared decode step over the live sequences, then each one's next token.
fn step(active: &mut [Sequence<'_, '_>], ctx: &Ctx<'_, '_>) {
    let mut live: Vec<&mut Sequence<'_, '_>> = active.iter_mut().filter(|s| !s.done).collect();
    if live.is_empty() {
        return;
    }
    let tokens: Vec<i64> = live.iter().map(|s| s.last).collect();
    let started = Instant::now();
    let result = {
        let mut decoders: Vec<&mut Decoder<'_>> = live.iter_mut().map(|s| &mut s.decoder).collect();
        Decoder::step_each(&mut decoders, &tokens)
    };
    ctx.metrics.step(tokens.len(), started.elapsed());
    match result {
        Ok(rows) => {
            for (s, row) in live.iter_mut().zip(rows) {
                s.logits = row;
                s.advance(ctx.metrics);
            }
        }
        Err(e) => {
            let error = internal(format!("a decode step failed: {e}"));
            live.iter_mut().for_each(|s| s.fail(error.clone()));
        }
    }
}

fn internal(message: String) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
}

/// One request in the batch.
struct Sequence<'s, 't> {
    decoder: Decoder<'s>,
    sampler: Sampler,
    stream: DecodeStream<'t>,
    text: TextOut,
    events: tokio::sync::mpsc::UnboundedSender<Event>,
    /// The logits the next token is sampled from.
    logits: Vec<f32>,
    /// The token to feed at the next step.
    last: i64,
    generated: usize,
    max_tokens: usize,
    done: bool,
}

impl<'s, 't> Sequence<'s, 't> {
    /// Prefills the prompt and reports `Started`.
    fn start(
        request: CompletionRequest,
        events: tokio::sync::mpsc::UnboundedSender<Event>,
        ctx: &Ctx<'s, 't>,
    ) -> Result<Self, ApiError> {
        let prompt = prompt_tokens(&request.prompt, ctx)?;
        let mut decoder = ctx
            .session
            .decoder()
            .map_err(|e| internal(format!("no decoder for this model: {e}")))?;
        if ctx.settings.context.is_some() {
            decoder = decoder.with_context(ctx.settings.context);
        }
        let logits = decoder
            .feed(&prompt)
            .map_err(|e| internal(format!("the prompt's prefill failed: {e}")))?;
        ctx.metrics
            .prompt_tokens
            .fetch_add(prompt.len() as u64, Ordering::Relaxed);
        let _ = events.send(Event::Started {
            prompt_tokens: prompt.len(),
        });
        let s = request.sampling;
        Ok(Sequence {
            decoder,
            sampler: Sampler::new(s.temperature, s.top_p, s.seed),
            stream: ctx.tokenizer.stream(),
            text: TextOut::new(&request.stop),
            events,
            logits,
            last: 0,
            generated: 0,
            max_tokens: request.max_tokens,
            done: false,
        })
    }

    /// Samples the next token from `logits` and sends its text; marks the sequence done when
    /// it has finished, failed or lost its client.
    fn advance(&mut self, metrics: &Metrics) {
        if self.generated == self.max_tokens {
            return self.finish(Finish::Length);
        }
        let Some(token) = self
            .sampler
            .next(&self.logits)
            .and_then(|t| i64::try_from(t).ok())
        else {
            return self.fail(internal("the model returned no logits".into()));
        };
        self.generated += 1;
        metrics.generated_tokens.fetch_add(1, Ordering::Relaxed);
        let bytes = match self.stream.step(token) {
            Ok(bytes) => bytes,
            Err(e) => return self.fail(internal(format!("decoding token {token}: {e}"))),
        };
        self.last = token;
        let piece = self.text.push(&bytes);
        self.send_text(piece);
        if self.text.stopped() {
            self.finish(Finish::Stop);
        } else if self.generated == self.max_tokens {
            self.finish(Finish::Length);
        }
    }

    fn send_text(&mut self, text: String) {
        if !text.is_empty() && self.events.send(Event::Text(text)).is_err() {
            // The client has gone: nothing more to do for it.
            self.done = true;
        }
    }

    fn finish(&mut self, finish: Finish) {
        let rest = self.text.finish();
        self.send_text(rest);
        let _ = self.events.send(Event::Done {
            finish,
            completion_tokens: self.generated,
        });
        self.done = true;
    }

    fn fail(&mut self, error: ApiError) {
        let _ = self.events.send(Event::Failed(error));
        self.done = true;
    }
}

/// The prompt's token ids, checked against the vocabulary and the length limit.
fn prompt_tokens(prompt: &Prompt, ctx: &Ctx<'_, '_>) -> Result<Vec<i64>, ApiError> {
    let ids = match prompt {
        Prompt::Text(text) => ctx.tokenizer.encode(text).map_err(|e| {
            ApiError::field("prompt", format!("`prompt` could not be encoded: {e}"))
        })?,
        Prompt::Tokens(ids) => ids.clone(),
    };
    let vocab = ctx.session.vocab_size();
    if let Some((i, id)) = ids
        .iter()
        .enumerate()
        .find(|&(_, &t)| t < 0 || t as u64 >= vocab as u64)
    {
        return Err(ApiError::field(
            "prompt",
            format!(
                "`prompt` token {i} is {id}, outside the vocabulary (0 to {})",
                vocab.saturating_sub(1)
            ),
        ));
    }
    let limit = ctx.settings.max_prompt_tokens;
    match ids.len() {
        0 => Err(ApiError::field(
            "prompt",
            "`prompt` is empty: generation needs at least one token to continue from",
        )),
        n if n > limit => Err(ApiError::field(
            "prompt",
            format!(
                "`prompt` is {n} tokens; the server takes at most {limit} (--max-prompt-tokens)"
            ),
        )),
        _ => Ok(ids),
    }
}
