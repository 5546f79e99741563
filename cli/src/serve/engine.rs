//! `Engine`: the thread that owns the model and runs every decode step, and the handle the
//! async side submits requests through. The thread opens the session and the tokenizer
//! itself (neither has to cross threads) and runs [`batch::run`]; requests reach it over a
//! bounded channel (its capacity is the queue: full means 429), and each request's tokens
//! come back as [`Event`]s over a channel of its own. Dropping a request's receiver cancels
//! it at the next step. The thread ends once every handle is dropped and the batch is empty.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use anyhow::{Context, Result, anyhow};
use axum::http::StatusCode;
use switchhead_runtime::Tokenizer;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::batch::{self, Settings};
use super::error::ApiError;
use super::metrics::Metrics;
use super::request::CompletionRequest;
use crate::model_arg::ModelArg;
use crate::open::{OpenOptions, open};

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// `max_tokens` reached.
    Length,
    /// A stop string appeared.
    Stop,
}

impl Finish {
    /// OpenAI's `finish_reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Length => "length",
            Finish::Stop => "stop",
        }
    }
}

/// What the engine tells a request, in this order: `Started` or `Failed`, then `Text`
/// pieces, then `Done` or `Failed`.
#[derive(Debug)]
pub enum Event {
    /// The prompt is in the batch.
    Started {
        prompt_tokens: usize,
    },
    Text(String),
    Done {
        finish: Finish,
        completion_tokens: usize,
    },
    Failed(ApiError),
}

/// A request on its way to the engine.
#[derive(Debug)]
pub struct Job {
    pub request: CompletionRequest,
    pub events: UnboundedSender<Event>,
}

/// What `GET /v1/models` says about the model.
#[derive(Debug, Clone)]
pub struct ModelCard {
    pub id: String,
    pub vocab_size: usize,
    pub backend: &'static str,
    pub tokenizer: String,
}

/// How the engine opens its model and batches.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub model: ModelArg,
    pub open: OpenOptions,
    /// A tokenizer file (default: the model's, else bytes for a vocabulary of 256).
    pub tokenizer: Option<PathBuf>,
    pub settings: Settings,
    /// Requests that may wait for a place in the batch.
    pub max_queue: usize,
}

/// The async side's handle on the engine thread.
#[derive(Debug)]
pub struct Engine {
    jobs: SyncSender<Job>,
    metrics: Arc<Metrics>,
    max_queue: usize,
}

impl Engine {
    /// Starts the thread and waits until it has opened the model (or failed to).
    pub fn start(
        config: EngineConfig,
        metrics: Arc<Metrics>,
    ) -> Result<(Engine, ModelCard, JoinHandle<()>)> {
        let (jobs, queue) = sync_channel(config.max_queue);
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let max_queue = config.max_queue;
        let thread_metrics = Arc::clone(&metrics);
        let thread = std::thread::Builder::new()
            .name("switchhead-engine".into())
            .spawn(move || serve_model(config, queue, &thread_metrics, ready_tx))
            .context("starting the engine thread")?;
        let card = ready
            .recv()
            .map_err(|_| anyhow!("the engine thread ended while opening the model"))??;
        let engine = Engine {
            jobs,
            metrics,
            max_queue,
        };
        Ok((engine, card, thread))
    }

    /// Queues a request; its events come on the returned channel. 429 when the queue is full.
    pub fn submit(&self, request: CompletionRequest) -> Result<UnboundedReceiver<Event>, ApiError> {
        let (events, receiver) = unbounded_channel();
        self.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
        let sent = self.jobs.try_send(Job { request, events });
        if let Err(e) = sent {
            self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
            return Err(match e {
                TrySendError::Full(_) => ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "the server is busy: {} requests are waiting already (--max-queue); retry later",
                        self.max_queue
                    ),
                ),
                TrySendError::Disconnected(_) => engine_gone(),
            });
        }
        Ok(receiver)
    }
}

/// The 500 for a request whose engine thread has ended.
pub fn engine_gone() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the engine stopped before finishing the request",
    )
}

/// The engine thread: opens the model, reports, and runs the batch until the handles go.
fn serve_model(
    config: EngineConfig,
    queue: Receiver<Job>,
    metrics: &Metrics,
    ready: std::sync::mpsc::Sender<Result<ModelCard>>,
) {
    let opened = match open_model(&config) {
        Ok(opened) => opened,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let (opened, tokenizer, card) = opened;
    if ready.send(Ok(card)).is_err() {
        return;
    }
    batch::run(
        &opened.session,
        &tokenizer,
        &queue,
        metrics,
        &config.settings,
    );
}

fn open_model(config: &EngineConfig) -> Result<(crate::open::Opened, Tokenizer, ModelCard)> {
    let opened = open(&config.model, config.open)?;
    let vocab_size = opened.session.info().vocab_size;
    let tokenizer =
        Tokenizer::for_model(&config.model.model, config.tokenizer.as_deref(), vocab_size)?;
    let card = ModelCard {
        id: model_id(&config.model.model),
        vocab_size,
        backend: opened.session.backend_name(),
        tokenizer: tokenizer.describe(),
    };
    Ok((opened, tokenizer, card))
}

/// The model's name: the file's stem, or its folder's name for a `model.*` file or a folder.
fn model_id(path: &std::path::Path) -> String {
    let name = |p: &std::path::Path| p.file_stem().map(|s| s.to_string_lossy().into_owned());
    match name(path) {
        Some(stem) if stem != "model" && !path.is_dir() => stem,
        _ if path.is_dir() => name(path).unwrap_or_else(|| "model".into()),
        _ => path
            .parent()
            .and_then(name)
            .unwrap_or_else(|| "model".into()),
    }
}
