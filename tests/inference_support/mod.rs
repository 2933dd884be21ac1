//! Shared by the inference tests: fake backends (real HTTP servers on loopback), a gateway
//! started in-process, and a raw HTTP/1.1 client that can also misbehave.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::{Request, Response};
use nemoclaw::blueprint::credential::CredentialRef;
use nemoclaw::blueprint::Inference;
use nemoclaw::gateway::credentials::{Credentials, Secret};
use nemoclaw::gateway::inference::{Router, RouterConfig, ServeOptions};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub type Boxed = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// How a fake backend behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// OpenAI-compatible; answers 401 unless it gets `Bearer <key>` (or `x-api-key: <key>`).
    Ok,
    /// Always 500, echoing the Authorization header it got (a careless backend).
    Fail,
    /// Sleeps before answering.
    Slow(Duration),
}

/// What a fake backend saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub auth: Option<String>,
    pub api_key: Option<String>,
    pub body: Value,
}

pub struct Fake {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Streams whose receiver went away before the end (the gateway cancelled upstream).
    pub cancelled: Arc<AtomicUsize>,
    pub completed_streams: Arc<AtomicUsize>,
    pub key: Arc<Mutex<String>>,
}

impl Fake {
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    pub fn set_key(&self, k: &str) {
        *self.key.lock().unwrap() = k.to_string();
    }
}

/// Starts a fake backend on loopback.
pub async fn fake(mode: Mode, key: &str) -> Fake {
    fake_with(mode, key, None).await
}

/// A fake backend that speaks HTTPS with `tls` (its URL is `https://localhost:PORT/v1`).
pub async fn fake_tls(mode: Mode, key: &str, tls: rustls::ServerConfig) -> Fake {
    fake_with(
        mode,
        key,
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls))),
    )
    .await
}

async fn fake_with(mode: Mode, key: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = Fake {
        addr,
        seen: Arc::default(),
        cancelled: Arc::default(),
        completed_streams: Arc::default(),
        key: Arc::new(Mutex::new(key.to_string())),
    };
    let (seen, cancelled, done, key) = (
        fake.seen.clone(),
        fake.cancelled.clone(),
        fake.completed_streams.clone(),
        fake.key.clone(),
    );
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let (seen, cancelled, done, key) =
                (seen.clone(), cancelled.clone(), done.clone(), key.clone());
            let tls = tls.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    fake_answer(
                        mode,
                        req,
                        seen.clone(),
                        cancelled.clone(),
                        done.clone(),
                        key.lock().unwrap().clone(),
                    )
                });
                let http = hyper::server::conn::http1::Builder::new();
                match tls {
                    None => {
                        let _ = http
                            .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                            .await;
                    }
                    Some(acceptor) => {
                        if let Ok(t) = acceptor.accept(s).await {
                            let _ = http
                                .serve_connection(hyper_util::rt::TokioIo::new(t), svc)
                                .await;
                        }
                    }
                }
            });
        }
    });
    fake
}

fn full(status: u16, v: Value) -> Response<Boxed> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())).boxed())
        .unwrap()
}

async fn fake_answer(
    mode: Mode,
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
    cancelled: Arc<AtomicUsize>,
    done: Arc<AtomicUsize>,
    key: String,
) -> Result<Response<Boxed>, Infallible> {
    let path = req.uri().path().to_string();
    let h = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (auth, api_key) = (h("authorization"), h("x-api-key"));
    let bytes = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    seen.lock().unwrap().push(Seen {
        path: path.clone(),
        auth: auth.clone(),
        api_key: api_key.clone(),
        body: body.clone(),
    });
    match mode {
        Mode::Fail => {
            return Ok(full(
                500,
                json!({"error": {"message": format!("internal error; you sent {auth:?}")}}),
            ))
        }
        Mode::Slow(d) => {
            // Counts a request whose handler was dropped mid-sleep (the caller went away).
            let mut g = Unfinished(cancelled.clone(), true);
            tokio::time::sleep(d).await;
            g.1 = false;
        }
        Mode::Ok => {}
    }
    let authorised = auth.as_deref() == Some(&format!("Bearer {key}"))
        || api_key.as_deref() == Some(key.as_str());
    if !authorised {
        return Ok(full(
            401,
            json!({"error": {"message": format!("bad key {auth:?}"), "type": "auth"}}),
        ));
    }
    let model = body["model"].as_str().unwrap_or("?").to_string();
    if path.ends_with("/embeddings") {
        return Ok(full(
            200,
            json!({"object": "list", "model": model, "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}], "usage": {"prompt_tokens": 3, "total_tokens": 3}}),
        ));
    }
    if path.ends_with("/messages") {
        return Ok(full(
            200,
            json!({"id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": [{"type": "text", "text": "hello from claude"}], "stop_reason": "end_turn", "usage": {"input_tokens": 4, "output_tokens": 3}}),
        ));
    }
    let text = format!(
        "echo: {}",
        body["messages"][0]["content"].as_str().unwrap_or("")
    );
    if body["stream"] == true && model == "leaky-stream" {
        // A careless backend that echoes the key it got in an event, cut in two mid-key.
        let got = auth.clone().unwrap_or_default();
        let got = got.trim_start_matches("Bearer ").to_string();
        let event = format!("data: {{\"error\": \"rejected key {got}\"}}\n\n");
        let cut = event.find(&got).unwrap() + got.len() / 2;
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        tokio::spawn(async move {
            for part in [&event[..cut], &event[cut..], "data: [DONE]\n\n"] {
                let _ = tx.send(Bytes::from(part.to_string())).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        return Ok(Response::builder()
            .status(200)
            .header("content-type", "text/event-stream")
            .body(Chan(rx).boxed())
            .unwrap());
    }
    if body["stream"] == true {
        // `slow-stream`: 50 chunks 100 ms apart; otherwise 3 chunks 300 ms apart.
        let (n, gap) = if model == "slow-stream" {
            (50, 100)
        } else {
            (3, 300)
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        let usage = body["stream_options"]["include_usage"] == true;
        tokio::spawn(async move {
            for i in 0..n {
                let c = json!({"id": "c", "object": "chat.completion.chunk", "model": model, "choices": [{"index": 0, "delta": {"content": format!("part{i} ")}, "finish_reason": null}]});
                if tx
                    .send(Bytes::from(format!("data: {c}\n\n")))
                    .await
                    .is_err()
                {
                    cancelled.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(gap)).await;
            }
            if usage {
                let u = json!({"id": "c", "object": "chat.completion.chunk", "model": model, "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": n, "total_tokens": 11 + n}});
                let _ = tx.send(Bytes::from(format!("data: {u}\n\n"))).await;
            }
            let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
            done.fetch_add(1, Ordering::SeqCst);
        });
        return Ok(Response::builder()
            .status(200)
            .header("content-type", "text/event-stream")
            .body(Chan(rx).boxed())
            .unwrap());
    }
    let max = body["max_tokens"].clone();
    Ok(full(
        200,
        json!({
            "id": "x", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
            "echo_max_tokens": max,
        }),
    ))
}

struct Unfinished(Arc<AtomicUsize>, bool);

impl Drop for Unfinished {
    fn drop(&mut self) {
        if self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

struct Chan(tokio::sync::mpsc::Receiver<Bytes>);

impl Body for Chan {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// One `openai` backend `up` (key from env `UP_KEY`, 3 s timeout), a `nim/` route, models
/// `m-1` and `nim/*`, maxTokens 256, temperature 0..1; `extra` replaces top-level fields.
pub fn one_backend(url: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut v = json!({
        "backends": [{"name": "up", "kind": "openai", "url": url, "apiKey": {"env": "UP_KEY"}, "timeout": "3s"}],
        "routes": [{"match": "nim/", "backends": ["up"]}],
        "allowedModels": ["m-1", "nim/*"],
        "limits": {"maxTokens": 256, "temperature": {"min": 0.0, "max": 1.0}},
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

/// An inference section from JSON (the blueprint's camelCase).
pub fn inference(v: Value) -> Inference {
    serde_json::from_value(v).expect("a valid inference section")
}

/// Keys by env variable name.
pub fn creds(pairs: &[(&str, &str)]) -> Credentials {
    let mut c = Credentials::default();
    for (name, value) in pairs {
        c.insert(CredentialRef::Env((*name).into()), Secret::new(*value));
    }
    c
}

pub struct Gateway {
    pub addr: SocketAddr,
    pub router: Router,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Gateway {
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("logs").join("inference.jsonl")
    }
    /// The log lines so far (waits for the writer thread to catch up).
    pub async fn log_lines(&self, at_least: usize) -> Vec<Value> {
        for _ in 0..100 {
            let text = std::fs::read_to_string(self.log_file()).unwrap_or_default();
            let lines: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if lines.len() >= at_least {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "fewer than {at_least} log lines in {}",
            self.log_file().display()
        );
    }
}

/// Starts a router for `inf` on loopback, logging under a temporary directory.
pub async fn gateway(inf: Inference, c: &Credentials) -> Gateway {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    gateway_in(inf, c, &dir, Some(tmp)).await
}

pub async fn gateway_in(
    inf: Inference,
    c: &Credentials,
    dir: &Path,
    tmp: Option<tempfile::TempDir>,
) -> Gateway {
    let mut cfg = RouterConfig::new("test", inf, dir);
    cfg.log_dir = Some(dir.join("logs"));
    cfg.budget_file = Some(dir.join("run").join("inference-budget.json"));
    cfg.options = ServeOptions {
        header_read_timeout: Duration::from_secs(1),
        body_read_timeout: Duration::from_secs(2),
        ..ServeOptions::default()
    };
    let router = Router::build(cfg, c).expect("router builds");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let r = router.clone();
    tokio::spawn(async move { r.serve(listener).await });
    Gateway {
        addr,
        router,
        dir: dir.to_path_buf(),
        _tmp: tmp,
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends raw bytes on a new connection and reads the response until the server closes. The
/// write runs beside the read, so an answer sent before the whole request was read (413)
/// is still seen.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> Resp {
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let data = bytes.to_vec();
    let writer = tokio::spawn(async move {
        let _ = w.write_all(&data).await;
        w
    });
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 65536];
    let read = async {
        loop {
            match r.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("response within 10s");
    writer.abort();
    parse(&buf)
}

pub async fn read_response(s: &mut TcpStream) -> Resp {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 65536];
    let read = async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("response within 10s");
    parse(&buf)
}

/// Reads one Content-Length response from a kept-alive connection.
pub async fn read_keepalive(s: &mut TcpStream) -> Resp {
    let mut buf = vec![0u8; 65536];
    let mut got = Vec::new();
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("answer in 10s")
            .unwrap();
        assert!(n > 0, "connection closed");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("content-length");
            if body.len() >= len {
                return parse(&got);
            }
        }
    }
}

pub fn parse(buf: &[u8]) -> Resp {
    let text = String::from_utf8_lossy(buf).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {text:?}"));
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// POST a JSON body with the placeholder key (Connection: close).
pub async fn post(addr: SocketAddr, path: &str, body: &str) -> Resp {
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: inference.local\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        nemoclaw::policy::inference::PLACEHOLDER_KEY,
        body.len()
    );
    raw(addr, req.as_bytes()).await
}

pub fn chat(model: &str, content: &str) -> String {
    json!({"model": model, "messages": [{"role": "user", "content": content}]}).to_string()
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
