//! `switchhead serve MODEL`: the flags, and the server's life: the engine thread opens the
//! model, tokio serves the routes on `--host:--port` (port 0: any free port; the address is
//! printed on stderr), and SIGTERM or Ctrl-C drains: the listener closes, requests arriving
//! on open connections get 503, those in flight finish, then the engine stops and the
//! command returns (exit 0).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::batch::Settings;
use super::engine::{Engine, EngineConfig};
use super::limits::Limits;
use super::metrics::Metrics;
use super::routes::{App, router};
use crate::model_arg::ModelArg;
use crate::open::{BackendArgs, OpenOptions};

/// Arguments of `switchhead serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArg,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free one).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Threads of the model's kernels (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Sequences decoded together at most (1: one request at a time).
    #[arg(long, default_value_t = 32)]
    pub max_batch: usize,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// A tokenizer.json or SentencePiece .model (default: the one in the model's directory;
    /// byte-level for a vocabulary of 256).
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<PathBuf>,
    /// Context limit of RoPE models (default: the training context the model records).
    #[arg(long)]
    pub context: Option<usize>,
    /// Requests that may wait for a place in the batch (429 beyond).
    #[arg(long, default_value_t = Limits::default().max_queue)]
    pub max_queue: usize,
    /// Largest request body in bytes (413 beyond).
    #[arg(long, default_value_t = Limits::default().max_body_bytes)]
    pub max_body_bytes: usize,
    /// Longest prompt in tokens (400 beyond).
    #[arg(long, default_value_t = Limits::default().max_prompt_tokens)]
    pub max_prompt_tokens: usize,
    /// Largest `max_tokens` a request may ask for (400 beyond).
    #[arg(long, default_value_t = Limits::default().max_tokens)]
    pub max_tokens: usize,
    /// Seconds a request may take, from arrival to its last token (504 beyond).
    #[arg(long, default_value_t = Limits::default().timeout.as_secs_f64())]
    pub timeout: f64,
}

impl Args {
    fn limits(&self) -> Result<Limits> {
        if !(self.timeout.is_finite() && self.timeout > 0.0) {
            bail!(
                "--timeout must be a positive number of seconds, got {}",
                self.timeout
            );
        }
        if self.max_batch == 0 || self.max_queue == 0 {
            bail!("--max-batch and --max-queue must be at least 1");
        }
        Ok(Limits {
            max_body_bytes: self.max_body_bytes,
            max_prompt_tokens: self.max_prompt_tokens,
            max_tokens: self.max_tokens,
            timeout: Duration::from_secs_f64(self.timeout),
            max_queue: self.max_queue,
        })
    }

    fn engine_config(&self) -> EngineConfig {
        let open = OpenOptions {
            threads: self.threads,
            kv_cache: true,
            // on the CPU a checkpoint runs as a native plan, whose decode steps batch
            native: true,
            ..Default::default()
        }
        .with_backend(self.backend);
        EngineConfig {
            model: self.model.clone(),
            open,
            tokenizer: self.tokenizer.clone(),
            settings: Settings {
                max_batch: self.max_batch,
                max_prompt_tokens: self.max_prompt_tokens,
                context: self.context,
            },
            max_queue: self.max_queue,
        }
    }
}

/// Runs `switchhead serve` until SIGTERM or Ctrl-C.
pub fn run(args: Args) -> Result<()> {
    let limits = args.limits()?;
    let metrics = Arc::new(Metrics::default());
    let (engine, card, thread) = Engine::start(args.engine_config(), Arc::clone(&metrics))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let app = Arc::new(App::new(engine, metrics, limits, card));
    runtime.block_on(serve(app, &args.host, args.port))?;
    // Every handle on the engine is gone with the router: the thread ends when its batch is empty.
    thread
        .join()
        .map_err(|_| anyhow::anyhow!("the engine thread panicked"))?;
    eprintln!("switchhead serve: stopped");
    Ok(())
}

async fn serve(app: Arc<App>, host: &str, port: u16) -> Result<()> {
    let listener = tokio::net::TcpListener::bind((host, port))
        .await
        .with_context(|| format!("listening on {host}:{port}"))?;
    let addr = listener.local_addr()?;
    eprintln!(
        "switchhead serve: {} ({}, {}) on http://{addr}",
        app.card.id, app.card.backend, app.card.tokenizer
    );
    let draining = Arc::clone(&app.draining);
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown_signal(draining))
        .await
        .context("serving")
}

/// Resolves on SIGTERM or Ctrl-C, marking the server as draining.
async fn shutdown_signal(draining: Arc<AtomicBool>) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    draining.store(true, Ordering::Relaxed);
    eprintln!("switchhead serve: shutting down; finishing the requests in flight");
}
