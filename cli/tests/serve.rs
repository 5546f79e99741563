//! `switchhead serve` through the built binary, over loopback with a plain HTTP/1.1 client:
//! a greedy completion equals `switchhead run`'s text, alone and among 31 other concurrent
//! requests (which share decode steps); streams carry the same text as whole answers, token
//! prompts the same as text prompts, stop strings cut the text; every error is a JSON body
//! with a fitting status (400, 404, 405, 413, 429, 504); SIGTERM lets the request in flight
//! finish and exits 0. Model: the small `rope` test model as a native plan.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier, OnceLock, mpsc};
use std::time::Duration;

use serde_json::{Value, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `rope` model compiled once to a native plan (it shares decode steps in one pass).
fn plan() -> &'static Path {
    static PLAN: OnceLock<PathBuf> = OnceLock::new();
    PLAN.get_or_init(|| {
        let out = std::env::temp_dir().join(format!("serve-rope-{}.shplan", std::process::id()));
        let o = Command::new(env!("CARGO_BIN_EXE_switchhead-compile"))
            .arg(root().join("testdata/models/rope"))
            .arg("-o")
            .arg(&out)
            .output()
            .expect("run switchhead-compile");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out
    })
}

/// A running server, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        Server::start_on(plan(), extra)
    }

    fn start_on(model: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchhead"))
            .arg("serve")
            .arg(model)
            .args(["--port", "0", "--executor", "cpu", "--threads", "1"])
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start switchhead serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some((_, port)) = line.rsplit_once("127.0.0.1:") {
                    let _ = tx.send(port.trim().parse::<u16>().ok());
                }
                eprintln!("[server] {line}");
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(60))
            .ok()
            .flatten()
            .expect("the server prints its address");
        Server { child, port }
    }

    fn post(&self, body: &Value) -> Reply {
        self.request("POST", "/v1/completions", &body.to_string())
    }

    fn request(&self, method: &str, path: &str, body: &str) -> Reply {
        request(self.port, method, path, body).expect("HTTP exchange")
    }

    /// The text of a non-streamed completion (asserting a 200).
    fn complete(&self, body: &Value) -> (String, String) {
        let r = self.post(body);
        assert_eq!(r.status, 200, "{body}: {}", r.body);
        let v = r.json();
        let choice = &v["choices"][0];
        let text = choice["text"].as_str().expect("text").to_string();
        (
            text,
            choice["finish_reason"].as_str().unwrap_or("").to_string(),
        )
    }

    /// A streamed completion's data lines (asserting a 200 and an event stream).
    fn stream(&self, body: &Value) -> Vec<String> {
        let r = self.post(body);
        assert_eq!(r.status, 200, "{body}: {}", r.body);
        assert!(r.head.contains("text/event-stream"), "{}", r.head);
        sse_data(&r.body)
    }

    fn metric(&self, name: &str) -> f64 {
        let r = self.request("GET", "/metrics", "");
        r.body
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {name} in {}", r.body))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP response.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// Asserts a JSON error with `status` whose message mentions `mentions`.
    fn assert_error(&self, status: u16, mentions: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert!(self.head.contains("application/json"), "{}", self.head);
        let message = self.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(
            message.contains(mentions),
            "{status}: {message:?} lacks {mentions:?}"
        );
    }
}

/// One request on its own connection (`Connection: close`).
fn request(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<Reply> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let head = head.to_ascii_lowercase();
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok(Reply { status, head, body })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

/// A streamed completion's text and the finish reason of its last chunk.
fn stream_text(data: &[String]) -> (String, String) {
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("chunk json"))
        .collect();
    let text = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    let finish = chunks
        .last()
        .and_then(|c| c["choices"][0]["finish_reason"].as_str())
        .unwrap_or("")
        .to_string();
    (text, finish)
}

/// Prompts cut from the held-out text, of different lengths.
fn prompts(n: usize) -> Vec<String> {
    let text =
        std::fs::read_to_string(root().join("testdata/corpus/heldout-eval.txt")).expect("text");
    (0..n)
        .map(|i| {
            let start = i * 97;
            text[start..start + 3 + (i * 7) % 40].to_string()
        })
        .collect()
}

fn greedy(prompt: &str, max_tokens: usize) -> Value {
    json!({ "prompt": prompt, "max_tokens": max_tokens, "temperature": 0 })
}

/// `switchhead run`'s generated text (its stdout is the prompt, the text, a newline).
fn run_text(prompt: &str, max_tokens: usize) -> String {
    run_text_on(plan(), prompt, max_tokens)
}

fn run_text_on(model: &Path, prompt: &str, max_tokens: usize) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_switchhead"))
        .arg("run")
        .arg(model)
        .args([
            "--executor",
            "cpu",
            "--threads",
            "1",
            "--quiet",
            "--prompt",
            prompt,
        ])
        .args(["--max-tokens", &max_tokens.to_string()])
        .output()
        .expect("run switchhead run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    out.strip_prefix(prompt)
        .and_then(|t| t.strip_suffix('\n'))
        .expect("run prints the prompt first")
        .to_string()
}

#[test]
fn greedy_text_is_the_same_alone_and_among_31_others() {
    let server = Server::start(&["--max-batch", "32"]);
    let prompts = prompts(32);
    // Sequences of different lengths: they leave the batch at different steps.
    let bodies: Vec<Value> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut body = greedy(p, 6 + (i % 5) * 4);
            if i % 3 == 2 {
                body["temperature"] = json!(0.9);
                body["seed"] = json!(i);
            }
            body
        })
        .collect();
    let (first, finish) = server.complete(&bodies[0]);
    assert_eq!(
        first,
        run_text(&prompts[0], 6),
        "the server's greedy text is run's"
    );
    assert_eq!(finish, "length");
    let alone: Vec<String> = bodies.iter().map(|b| server.complete(b).0).collect();
    let counts = |s: &Server| {
        let rows = s.metric("switchhead_decode_step_rows_total");
        (rows, s.metric("switchhead_decode_step_seconds_count"))
    };
    let before = counts(&server);
    let barrier = Arc::new(Barrier::new(bodies.len()));
    let port = server.port;
    let threads: Vec<_> = bodies
        .iter()
        .cloned()
        .map(|body| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                request(port, "POST", "/v1/completions", &body.to_string()).expect("HTTP")
            })
        })
        .collect();
    let together: Vec<Reply> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    for (i, (reply, alone)) in together.iter().zip(&alone).enumerate() {
        assert_eq!(reply.status, 200, "{}", reply.body);
        if i % 3 != 2 {
            let text = reply.json()["choices"][0]["text"]
                .as_str()
                .unwrap_or("")
                .to_string();
            assert_eq!(&text, alone, "request {i}: greedy text among 31 others");
        }
    }
    let after = counts(&server);
    let (rows, steps) = (after.0 - before.0, after.1 - before.1);
    assert!(
        rows > 4.0 * steps,
        "steps were shared: {rows} rows in {steps} steps"
    );
    assert_eq!(server.metric("switchhead_queue_depth"), 0.0);
}

#[test]
fn streams_token_prompts_and_stop_strings_agree_with_whole_answers() {
    let server = Server::start(&[]);
    let prompt = "And the LORD spake unto Moses";
    let (text, _) = server.complete(&greedy(prompt, 24));
    assert_eq!(text.len(), 24, "byte-level, ASCII text: {text:?}");
    let mut body = greedy(prompt, 24);
    body["stream"] = json!(true);
    let data = server.stream(&body);
    assert!(data.len() > 3, "a chunk per piece of text: {data:?}");
    assert_eq!(stream_text(&data), (text.clone(), "length".to_string()));
    let ids: Vec<u8> = prompt.bytes().collect();
    let by_ids = server.complete(&json!({ "prompt": ids, "max_tokens": 24, "temperature": 0 }));
    assert_eq!(by_ids.0, text, "token ids give the text's completion");
    let stop = &text[10..13];
    let cut = text[..text.find(stop).expect("stop in text")].to_string();
    body["stop"] = json!(["never appears", stop]);
    assert_eq!(
        stream_text(&server.stream(&body)),
        (cut.clone(), "stop".to_string())
    );
    body["stream"] = json!(false);
    assert_eq!(server.complete(&body), (cut, "stop".to_string()));
    let sampled =
        json!({ "prompt": prompt, "max_tokens": 24, "temperature": 0.8, "top_p": 0.9, "seed": 7 });
    assert_eq!(
        server.complete(&sampled),
        server.complete(&sampled),
        "same seed, same text"
    );
}

#[test]
fn a_sentencepiece_checkpoint_streams_run_s_text_while_another_request_decodes() {
    // A checkpoint on the CPU: compiled to ONNX in memory, sequences step in turn (tract).
    let model = root().join("testdata/models/spm");
    let server = Server::start_on(&model, &[]);
    let prompt = "And God said";
    let want = run_text_on(&model, prompt, 12);
    let port = server.port;
    let other = std::thread::spawn(move || {
        let body = json!({ "prompt": "The LORD", "max_tokens": 40, "temperature": 0.7 });
        request(port, "POST", "/v1/completions", &body.to_string()).expect("HTTP")
    });
    let mut body = greedy(prompt, 12);
    body["stream"] = json!(true);
    let data = server.stream(&body);
    assert!(data.len() > 4, "a chunk per piece: {data:?}");
    assert_eq!(stream_text(&data), (want, "length".to_string()));
    assert_eq!(other.join().expect("thread").status, 200);
    let models = server.request("GET", "/v1/models", "").json();
    assert_eq!(models["data"][0]["id"], json!("spm"));
    assert_eq!(models["data"][0]["vocab_size"], json!(1000));
}

#[test]
fn every_error_is_json_with_a_fitting_status() {
    let server = Server::start(&[
        "--max-body-bytes",
        "4096",
        "--max-prompt-tokens",
        "64",
        "--max-tokens",
        "50",
    ]);
    let post = |body: &str| server.request("POST", "/v1/completions", body);
    post("{\"prompt\": ").assert_error(400, "not valid JSON");
    post("{}").assert_error(400, "`prompt` is required");
    post(r#"{"prompt": "a", "max_tokens": 51}"#)
        .assert_error(400, "`max_tokens` must be an integer from 0 to 50");
    post(r#"{"prompt": "a", "temperature": -1}"#).assert_error(400, "`temperature`");
    post(r#"{"prompt": "a", "top_p": 2}"#).assert_error(400, "`top_p`");
    post(r#"{"prompt": ""}"#).assert_error(400, "`prompt` is empty");
    post(r#"{"prompt": [1, 300]}"#).assert_error(400, "token 1 is 300, outside the vocabulary");
    post(&json!({ "prompt": "x".repeat(65) }).to_string()).assert_error(400, "at most 64");
    post(&json!({ "prompt": "x".repeat(5000) }).to_string()).assert_error(413, "length limit");
    server
        .request("GET", "/v1/completions", "")
        .assert_error(405, "POST");
    server
        .request("GET", "/nowhere", "")
        .assert_error(404, "/nowhere");
    let models = server.request("GET", "/v1/models", "").json();
    assert_eq!(
        models["data"][0]["id"],
        json!(format!("serve-rope-{}", std::process::id()))
    );
    assert_eq!(models["data"][0]["vocab_size"], json!(256));
    assert_eq!(
        server.request("GET", "/health", "").json(),
        json!({ "status": "ok" })
    );
    let metrics = server.request("GET", "/metrics", "");
    assert!(
        metrics.head.contains("text/plain; version=0.0.4"),
        "{}",
        metrics.head
    );
    assert!(
        metrics
            .body
            .contains("switchhead_requests_total{endpoint=\"/v1/completions\",status=\"400\"} 8"),
        "{}",
        metrics.body
    );
}

#[test]
fn a_full_queue_answers_429_and_a_slow_request_504() {
    let server = Server::start(&[
        "--max-batch",
        "1",
        "--max-queue",
        "1",
        "--max-tokens",
        "20000",
    ]);
    let port = server.port;
    let long =
        json!({ "prompt": "In the beginning", "max_tokens": 3000, "temperature": 0 }).to_string();
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let long = long.clone();
            std::thread::spawn(move || {
                request(port, "POST", "/v1/completions", &long).expect("HTTP")
            })
        })
        .collect();
    let replies: Vec<Reply> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    let busy: Vec<&Reply> = replies.iter().filter(|r| r.status == 429).collect();
    assert!(
        !busy.is_empty(),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    busy[0].assert_error(429, "--max-queue");
    assert!(busy[0].head.contains("retry-after: 1"), "{}", busy[0].head);
    assert!(replies.iter().all(|r| r.status == 200 || r.status == 429));
    drop(server);

    let server = Server::start(&["--timeout", "0.05", "--max-tokens", "20000"]);
    let slow = json!({ "prompt": "In the beginning", "max_tokens": 20000 });
    server.post(&slow).assert_error(504, "timeout of 0.05 s");
    let mut streamed = slow.clone();
    streamed["stream"] = json!(true);
    let data = server.stream(&streamed);
    let last: Value = serde_json::from_str(data.last().expect("an event")).expect("json");
    assert_eq!(last["error"]["code"], json!(504), "{data:?}");
    // The server still answers afterwards (the timed-out sequences left the batch).
    assert_eq!(server.complete(&greedy("In", 3)).1, "length");
}

#[test]
fn sigterm_finishes_the_request_in_flight_and_exits_0() {
    let mut server = Server::start(&["--max-tokens", "2000"]);
    let body = greedy("In the beginning God created", 1500);
    let timer = std::time::Instant::now();
    let (want, _) = server.complete(&body);
    let whole = timer.elapsed();
    let port = server.port;
    let sent = std::time::Instant::now();
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let (started_tx, started) = mpsc::channel();
    let client = std::thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let text = streamed.to_string();
        write!(
            s,
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        )
        .expect("send");
        let mut first = [0u8; 1];
        s.read_exact(&mut first).expect("first byte");
        let _ = started_tx.send(());
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).expect("read");
        rest.insert(0, first[0]);
        String::from_utf8_lossy(&rest).into_owned()
    });
    started
        .recv_timeout(Duration::from_secs(30))
        .expect("the stream started");
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let killed = sent.elapsed();
    eprintln!("the request takes {whole:?}; SIGTERM came {killed:?} into it");
    assert!(
        killed < whole / 2,
        "SIGTERM came {killed:?} into a request that takes {whole:?}: still in flight"
    );
    std::thread::sleep(Duration::from_millis(50));
    if let Ok(r) = request(
        port,
        "POST",
        "/v1/completions",
        &greedy("In", 2).to_string(),
    ) {
        assert_eq!(
            r.status, 503,
            "a request after SIGTERM is refused: {}",
            r.body
        );
    }
    let raw = client.join().expect("client");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let data = sse_data(&dechunk(body));
    assert_eq!(
        stream_text(&data),
        (want, "length".to_string()),
        "the stream finished"
    );
    let status = server.child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "serve exits 0 after SIGTERM");
}
