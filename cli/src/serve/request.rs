//! The body of `POST /v1/completions`, read field by field so that every error names the
//! field and what was expected. Fields follow OpenAI's completions API; unknown fields are
//! ignored (clients send `model`, `user`, ...), `n` other than 1 is refused.

use serde_json::{Map, Value};

use super::error::ApiError;
use super::limits::Limits;

/// What to continue from.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Text, encoded with the model's tokenizer.
    Text(String),
    /// Token ids, fed as they are.
    Tokens(Vec<i64>),
}

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// 0 is greedy.
    pub temperature: f32,
    /// Nucleus mass in (0, 1].
    pub top_p: f32,
    pub seed: u64,
}

/// A checked completion request.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    pub prompt: Prompt,
    pub max_tokens: usize,
    pub sampling: Sampling,
    /// Generation ends before the first of these strings; none of it is returned.
    pub stop: Vec<String>,
    /// Answer with server-sent events, a chunk per piece of text.
    pub stream: bool,
}

/// OpenAI's default `max_tokens`.
const DEFAULT_MAX_TOKENS: usize = 16;
/// OpenAI's limit on stop sequences.
const MAX_STOPS: usize = 4;

/// Parses and checks a request body against `limits`.
pub fn parse(body: &[u8], limits: &Limits) -> Result<CompletionRequest, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::field("body", format!("the body is not valid JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(ApiError::field("body", "the body must be a JSON object"));
    };
    check_n(&fields)?;
    Ok(CompletionRequest {
        prompt: prompt(&fields)?,
        max_tokens: max_tokens(&fields, limits)?,
        sampling: sampling(&fields)?,
        stop: stop(&fields)?,
        stream: flag(&fields, "stream")?,
    })
}

/// A field, with JSON null taken as absent.
fn get<'a>(fields: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    fields.get(name).filter(|v| !v.is_null())
}

fn prompt(fields: &Map<String, Value>) -> Result<Prompt, ApiError> {
    let expected = "a string, or an array of token ids (integers)";
    let bad =
        |what: &str| ApiError::field("prompt", format!("`prompt` must be {expected}, {what}"));
    match get(fields, "prompt") {
        None => Err(ApiError::field(
            "prompt",
            format!("`prompt` is required: {expected}"),
        )),
        Some(Value::String(s)) => Ok(Prompt::Text(s.clone())),
        Some(Value::Array(items)) => match items.as_slice() {
            [Value::String(s)] => Ok(Prompt::Text(s.clone())),
            _ => items
                .iter()
                .map(|v| {
                    v.as_i64()
                        .ok_or_else(|| bad(&format!("got an element {v}")))
                })
                .collect::<Result<_, _>>()
                .map(Prompt::Tokens),
        },
        Some(other) => Err(bad(&format!("got {other}"))),
    }
}

fn max_tokens(fields: &Map<String, Value>, limits: &Limits) -> Result<usize, ApiError> {
    let Some(v) = get(fields, "max_tokens") else {
        return Ok(DEFAULT_MAX_TOKENS.min(limits.max_tokens));
    };
    let limit = limits.max_tokens;
    v.as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n <= limit)
        .ok_or_else(|| {
            ApiError::field(
                "max_tokens",
                format!("`max_tokens` must be an integer from 0 to {limit} (the server's --max-tokens), got {v}"),
            )
        })
}

fn sampling(fields: &Map<String, Value>) -> Result<Sampling, ApiError> {
    let temperature = number(fields, "temperature", 1.0, "a number from 0 to 2", |t| {
        (0.0..=2.0).contains(&t)
    })?;
    let top_p = number(fields, "top_p", 1.0, "a number in (0, 1]", |p| {
        p > 0.0 && p <= 1.0
    })?;
    let seed = match get(fields, "seed") {
        None => 0,
        Some(v) => v.as_u64().ok_or_else(|| {
            ApiError::field("seed", format!("`seed` must be an integer >= 0, got {v}"))
        })?,
    };
    Ok(Sampling {
        temperature: temperature as f32,
        top_p: top_p as f32,
        seed,
    })
}

/// A number field within `ok`, `default` when absent.
fn number(
    fields: &Map<String, Value>,
    name: &'static str,
    default: f64,
    expected: &str,
    ok: impl Fn(f64) -> bool,
) -> Result<f64, ApiError> {
    let Some(v) = get(fields, name) else {
        return Ok(default);
    };
    v.as_f64()
        .filter(|&x| ok(x))
        .ok_or_else(|| ApiError::field(name, format!("`{name}` must be {expected}, got {v}")))
}

fn stop(fields: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    let expected = format!("a non-empty string or an array of at most {MAX_STOPS} of them");
    let bad =
        |got: &Value| ApiError::field("stop", format!("`stop` must be {expected}, got {got}"));
    let stops = match get(fields, "stop") {
        None => return Ok(Vec::new()),
        Some(Value::String(s)) => vec![s.clone()],
        Some(v @ Value::Array(items)) if items.len() <= MAX_STOPS => items
            .iter()
            .map(|s| s.as_str().map(str::to_owned).ok_or_else(|| bad(v)))
            .collect::<Result<_, _>>()?,
        Some(v) => return Err(bad(v)),
    };
    if stops.iter().any(String::is_empty) {
        return Err(ApiError::field(
            "stop",
            format!("`stop` must be {expected}, got an empty string"),
        ));
    }
    Ok(stops)
}

fn flag(fields: &Map<String, Value>, name: &'static str) -> Result<bool, ApiError> {
    match get(fields, name) {
        None => Ok(false),
        Some(v) => v.as_bool().ok_or_else(|| {
            ApiError::field(name, format!("`{name}` must be true or false, got {v}"))
        }),
    }
}

fn check_n(fields: &Map<String, Value>) -> Result<(), ApiError> {
    match get(fields, "n") {
        None => Ok(()),
        Some(v) if v.as_u64() == Some(1) => Ok(()),
        Some(v) => Err(ApiError::field(
            "n",
            format!("`n` must be 1 (one completion per request), got {v}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(body: &str) -> Result<CompletionRequest, ApiError> {
        parse(body.as_bytes(), &Limits::default())
    }

    #[test]
    fn defaults_follow_openai() -> Result<(), ApiError> {
        let r = parse_str(r#"{"prompt": "In the", "model": "x"}"#)?;
        assert_eq!(r.prompt, Prompt::Text("In the".into()));
        assert_eq!((r.max_tokens, r.stream), (16, false));
        assert_eq!(
            r.sampling,
            Sampling {
                temperature: 1.0,
                top_p: 1.0,
                seed: 0
            }
        );
        assert!(r.stop.is_empty());
        Ok(())
    }

    #[test]
    fn token_prompts_and_stop_lists() -> Result<(), ApiError> {
        let r = parse_str(r#"{"prompt": [1, 2, 3], "stop": ["a", "bc"], "stream": true}"#)?;
        assert_eq!(r.prompt, Prompt::Tokens(vec![1, 2, 3]));
        assert_eq!(r.stop, vec!["a".to_string(), "bc".to_string()]);
        assert!(r.stream);
        Ok(())
    }

    #[test]
    fn errors_name_the_field() {
        for (body, param) in [
            ("[1]", "body"),
            ("{", "body"),
            ("{}", "prompt"),
            (r#"{"prompt": 3}"#, "prompt"),
            (r#"{"prompt": [1, "a"]}"#, "prompt"),
            (r#"{"prompt": "a", "max_tokens": 100000}"#, "max_tokens"),
            (r#"{"prompt": "a", "max_tokens": -1}"#, "max_tokens"),
            (r#"{"prompt": "a", "temperature": -0.5}"#, "temperature"),
            (r#"{"prompt": "a", "top_p": 0}"#, "top_p"),
            (r#"{"prompt": "a", "seed": "x"}"#, "seed"),
            (r#"{"prompt": "a", "stop": [""]}"#, "stop"),
            (r#"{"prompt": "a", "stop": ["1","2","3","4","5"]}"#, "stop"),
            (r#"{"prompt": "a", "stream": "yes"}"#, "stream"),
            (r#"{"prompt": "a", "n": 2}"#, "n"),
        ] {
            let err = parse_str(body).err();
            assert_eq!(
                err.as_ref().and_then(|e| e.param),
                Some(param),
                "{body}: {err:?}"
            );
        }
    }
}
