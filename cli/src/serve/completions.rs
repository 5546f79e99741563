//! `POST /v1/completions`: checks the body, queues the request, and answers once the engine
//! has taken the prompt (so a refused prompt still gets its 4xx): with the whole text, or
//! with server-sent events, a `text_completion` chunk per piece of text and `data: [DONE]`
//! at the end. A stream past the request timeout ends with an error event.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

use super::engine::{Event, Finish, engine_gone};
use super::error::ApiError;
use super::request;
use super::routes::App;

/// The handler.
pub async fn completions(
    State(app): State<Arc<App>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let deadline = Instant::now() + app.limits.timeout;
    match handle(&app, body, deadline).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn handle(
    app: &Arc<App>,
    body: Result<Bytes, BytesRejection>,
    deadline: Instant,
) -> Result<Response, ApiError> {
    app.check_open()?;
    let body = body.map_err(|r| ApiError::field("body", r.body_text()).with_status(r.status()))?;
    let request = request::parse(&body, &app.limits)?;
    let stream = request.stream;
    let mut events = app.engine.submit(request)?;
    let prompt_tokens = match events.recv().await {
        Some(Event::Started { prompt_tokens }) => prompt_tokens,
        Some(Event::Failed(e)) => return Err(e),
        _ => return Err(engine_gone()),
    };
    let head = Head::new(app);
    if stream {
        let sse = Sse::new(sse_stream(head, events, deadline, app.limits.timeout));
        return Ok(sse.keep_alive(KeepAlive::default()).into_response());
    }
    let (text, finish, completion_tokens) = collect(&mut events).await?;
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    });
    let mut body = head.chunk(&text, Some(finish));
    body["usage"] = usage;
    Ok((StatusCode::OK, Json(body)).into_response())
}

/// The whole text, why it ended and how many tokens it took.
async fn collect(
    events: &mut UnboundedReceiver<Event>,
) -> Result<(String, Finish, usize), ApiError> {
    let mut text = String::new();
    loop {
        match events.recv().await {
            Some(Event::Text(piece)) => text.push_str(&piece),
            Some(Event::Started { .. }) => {}
            Some(Event::Done {
                finish,
                completion_tokens,
            }) => return Ok((text, finish, completion_tokens)),
            Some(Event::Failed(e)) => return Err(e),
            None => return Err(engine_gone()),
        }
    }
}

/// What every response object of one request repeats.
struct Head {
    id: String,
    created: u64,
    model: String,
}

impl Head {
    fn new(app: &App) -> Self {
        Head {
            id: format!("cmpl-{}", app.next_id()),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            model: app.card.id.clone(),
        }
    }

    /// A `text_completion` object with one choice.
    fn chunk(&self, text: &str, finish: Option<Finish>) -> Value {
        json!({
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "text": text,
                "index": 0,
                "logprobs": null,
                "finish_reason": finish.map(Finish::as_str),
            }],
        })
    }
}

/// Where a stream is.
enum Phase {
    Events(UnboundedReceiver<Event>),
    Done,
    End,
}

/// The events of a streamed completion.
fn sse_stream(
    head: Head,
    events: UnboundedReceiver<Event>,
    deadline: Instant,
    timeout: std::time::Duration,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let head = Arc::new(head);
    stream::unfold(Phase::Events(events), move |phase| {
        let head = Arc::clone(&head);
        async move {
            let (data, next) = match phase {
                Phase::End => return None,
                Phase::Done => ("[DONE]".to_string(), Phase::End),
                Phase::Events(mut rx) => next_chunk(&head, &mut rx, deadline, timeout)
                    .await
                    .map_or_else(
                        |e| (e, Phase::End),
                        |(d, done)| (d, if done { Phase::Done } else { Phase::Events(rx) }),
                    ),
            };
            Some((Ok(SseEvent::default().data(data)), next))
        }
    })
}

/// The next chunk's JSON and whether it is the last; Err holds an error object to send.
async fn next_chunk(
    head: &Head,
    rx: &mut UnboundedReceiver<Event>,
    deadline: Instant,
    timeout: std::time::Duration,
) -> Result<(String, bool), String> {
    loop {
        let event = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .map_err(|_| timed_out(timeout).body().to_string())?;
        return match event {
            Some(Event::Started { .. }) => continue,
            Some(Event::Text(piece)) => Ok((head.chunk(&piece, None).to_string(), false)),
            Some(Event::Done { finish, .. }) => {
                Ok((head.chunk("", Some(finish)).to_string(), true))
            }
            Some(Event::Failed(e)) => Err(e.body().to_string()),
            None => Err(engine_gone().body().to_string()),
        };
    }
}

/// The error for a request past the server's timeout.
pub fn timed_out(timeout: std::time::Duration) -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        format!(
            "the request took longer than the server's timeout of {} s (--timeout)",
            timeout.as_secs_f64()
        ),
    )
}
