//! The router: the endpoints, JSON errors for unknown paths and methods, the body limit, and
//! one middleware that holds every request to the timeout and counts responses.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::completions::{completions, timed_out};
use super::engine::{Engine, ModelCard};
use super::error::ApiError;
use super::limits::Limits;
use super::metrics::Metrics;

/// What the handlers share.
#[derive(Debug)]
pub struct App {
    pub engine: Engine,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    pub card: ModelCard,
    /// Set on SIGTERM: requests still arriving are refused with 503.
    pub draining: Arc<AtomicBool>,
    ids: AtomicU64,
}

impl App {
    pub fn new(engine: Engine, metrics: Arc<Metrics>, limits: Limits, card: ModelCard) -> Self {
        App {
            engine,
            metrics,
            limits,
            card,
            draining: Arc::new(AtomicBool::new(false)),
            ids: AtomicU64::new(0),
        }
    }

    /// A new completion id.
    pub fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    /// 503 once the server is shutting down.
    pub fn check_open(&self) -> Result<(), ApiError> {
        if self.draining.load(Ordering::Relaxed) {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is shutting down and takes no new requests",
            ));
        }
        Ok(())
    }
}

/// The server's routes over `app`.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(app.limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), guard))
        .with_state(app)
}

/// Holds the request to the timeout (body, queue and, unless streamed, generation) and
/// counts its response.
async fn guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let endpoint = endpoint(request.uri().path());
    let response = tokio::time::timeout(app.limits.timeout, next.run(request))
        .await
        .unwrap_or_else(|_| timed_out(app.limits.timeout).into_response());
    app.metrics.request(endpoint, response.status().as_u16());
    response
}

/// The path as a metrics label (unknown paths as one, so they cannot grow the table).
fn endpoint(path: &str) -> &'static str {
    match path {
        "/v1/completions" => "/v1/completions",
        "/v1/models" => "/v1/models",
        "/health" => "/health",
        "/metrics" => "/metrics",
        _ => "other",
    }
}

async fn models(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    let card = &app.card;
    Json(json!({
        "object": "list",
        "data": [{
            "id": card.id,
            "object": "model",
            "created": 0,
            "owned_by": "switchhead",
            "vocab_size": card.vocab_size,
            "backend": card.backend,
            "tokenizer": card.tokenizer,
        }],
    }))
}

async fn health(State(app): State<Arc<App>>) -> Response {
    match app.check_open() {
        Ok(()) => Json(json!({ "status": "ok" })).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], app.metrics.render()).into_response()
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no endpoint at {}: the server has POST /v1/completions, GET /v1/models, GET /health and GET /metrics",
            uri.path()
        ),
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed: /v1/completions takes POST, the other endpoints GET",
    )
}
