//! Talking to backends: the HTTP(S) client, fallback along a route's chain, and the streaming
//! body that passes SSE through chunk by chunk while it notes the time to first token and the
//! final usage. Dropping that body (the client went away) drops the upstream response, which
//! closes the upstream connection: the backend's work is cancelled.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::{header, Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

pub use super::backend::Failure;
use super::backend::{BackendSpec, Call, Reply, EVENT_STREAM};
use super::error::InferenceError;
use super::log::Pending;
use super::scrub_stream::StreamScrub;
use super::{BoxBody, BoxError};
use crate::blueprint::BackendKind;
use crate::gateway::credentials::Secret;

pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The client for HTTP(S) backends. HTTPS trusts the Mozilla roots (webpki-roots) plus the
/// certificates in `extra_ca` (PEM), for backends behind a private CA.
pub fn client(extra_ca: Option<&Path>) -> Result<HttpClient, InferenceError> {
    let https = crate::tls::https_connector(
        extra_ca,
        crate::tls::Schemes::HttpsOrHttp,
        Duration::from_secs(10),
    )
    .map_err(InferenceError::Tls)?;
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(512)
        .build(https))
}

/// Request headers passed from the agent to the backend (the rest, `authorization` first, are
/// dropped).
const FORWARDED: [&str; 4] = [
    "accept",
    "anthropic-version",
    "anthropic-beta",
    "openai-beta",
];

/// Sends one request to an HTTP backend; `Ok` unless it failed in a way that falls back.
pub async fn send(
    b: &BackendSpec,
    base: &str,
    authority: &str,
    call: &Call<'_>,
) -> Result<Reply, Failure> {
    let mut req = Request::post(format!("{base}{}", call.endpoint.upstream_suffix()))
        .header(header::HOST, authority)
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-request-id", call.request_id);
    for name in FORWARDED {
        if let Some(v) = call.headers.get(name) {
            req = req.header(name, v);
        }
    }
    if b.kind == BackendKind::Anthropic && !call.headers.contains_key("anthropic-version") {
        req = req.header("anthropic-version", "2023-06-01");
    }
    if let Some(key) = &b.key {
        let (name, value) = auth_header(b.kind, key)?;
        req = req.header(name, value);
    }
    let req = req
        .body(Full::new(call.bytes.clone()))
        .map_err(Failure::Request)?;
    match tokio::time::timeout(b.timeout, call.client.request(req)).await {
        Err(_) => Err(Failure::Timeout(b.timeout)),
        Ok(Err(e)) => Err(Failure::Connect(e)),
        Ok(Ok(resp)) if resp.status().is_server_error() => {
            Err(Failure::Status(resp.status().as_u16()))
        }
        Ok(Ok(resp)) => Ok(reply(resp)),
    }
}

/// The key's header: `x-api-key` for Anthropic, `authorization: Bearer` otherwise.
fn auth_header(
    kind: BackendKind,
    key: &Secret,
) -> Result<(&'static str, header::HeaderValue), Failure> {
    let (name, value) = match kind {
        BackendKind::Anthropic => ("x-api-key", header::HeaderValue::from_str(key.expose())),
        _ => (
            "authorization",
            header::HeaderValue::from_str(&format!("Bearer {}", key.expose())),
        ),
    };
    let mut value = value.map_err(|_| Failure::BadKey)?;
    value.set_sensitive(true);
    Ok((name, value))
}

/// An HTTP backend's answer as a [`Reply`]: its status and content type (plus `no-cache` on a
/// stream) and its body.
fn reply(r: Response<Incoming>) -> Reply {
    let status = r.status().as_u16();
    let ct = r.headers().get(header::CONTENT_TYPE).cloned();
    let streamed = ct
        .as_ref()
        .and_then(|c| c.to_str().ok())
        .is_some_and(|c| c.starts_with(EVENT_STREAM));
    let mut head = Response::builder().status(status);
    if let Some(ct) = ct {
        head = head.header(header::CONTENT_TYPE, ct);
    }
    if streamed {
        head = head.header(header::CACHE_CONTROL, "no-cache");
    }
    Reply {
        status,
        head,
        body: boxed(r.into_body()),
        streamed,
    }
}

/// Token counts from a usage object (OpenAI `prompt_tokens`/`completion_tokens`, Anthropic
/// `input_tokens`/`output_tokens`).
pub fn usage_of(v: &Value) -> (Option<u64>, Option<u64>) {
    usage_counts(&v["usage"])
}

/// Token counts of a `usage` object itself (absent fields, or a missing object, are `None`).
pub fn usage_counts(u: &Value) -> (Option<u64>, Option<u64>) {
    let p = u["prompt_tokens"]
        .as_u64()
        .or_else(|| u["input_tokens"].as_u64());
    let c = u["completion_tokens"]
        .as_u64()
        .or_else(|| u["output_tokens"].as_u64());
    (p, c)
}

/// Reads usage from SSE lines as they pass.
#[derive(Default)]
pub struct SseUsage {
    line: Vec<u8>,
    pub prompt: Option<u64>,
    pub completion: Option<u64>,
}

impl SseUsage {
    pub fn feed(&mut self, chunk: &[u8]) {
        for &b in chunk {
            if b == b'\n' {
                self.line_done();
            } else if self.line.len() < (1 << 20) {
                self.line.push(b);
            }
        }
    }
    fn line_done(&mut self) {
        let line = std::mem::take(&mut self.line);
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        if memchr::memmem::find(data, b"\"usage\"").is_none() {
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(data.trim_ascii()) else {
            return;
        };
        // Anthropic puts input tokens in message_start.message.usage.
        let (p, c) = if v["message"]["usage"].is_object() {
            usage_of(&v["message"])
        } else {
            usage_of(&v)
        };
        if p.is_some() {
            self.prompt = p;
        }
        if c.is_some() {
            self.completion = c;
        }
    }
}

/// A streamed response on its way to the agent.
pub struct Observed {
    inner: BoxBody,
    /// Held keys scrubbed from what passes (a backend echoing its key).
    scrub: StreamScrub,
    /// The inner body has ended (what the scrubber held back is still to go).
    ended: bool,
    pending: Option<Pending>,
    usage: SseUsage,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Observed {
    pub fn new(inner: BoxBody, scrub: StreamScrub, pending: Pending, idle: Duration) -> Observed {
        Observed {
            inner,
            scrub,
            ended: false,
            pending: Some(pending),
            usage: SseUsage::default(),
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }
    fn finish(&mut self, note: Option<String>) {
        if let Some(mut p) = self.pending.take() {
            p.rec.prompt_tokens = self.usage.prompt.or(p.rec.prompt_tokens);
            p.rec.completion_tokens = self.usage.completion.or(p.rec.completion_tokens);
            if let Some(n) = note {
                p.rec.error = Some(n);
            }
        }
    }
}

impl Body for Observed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let frame = match frame.into_data() {
                    Ok(d) => {
                        let d = this.scrub.feed(d);
                        this.usage.feed(&d);
                        if let Some(p) = this.pending.as_mut() {
                            p.mark_first_byte();
                        }
                        Frame::data(d)
                    }
                    Err(other) => other,
                };
                let deadline = tokio::time::Instant::now() + this.idle;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(Some(format!("upstream stream failed: {e}")));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.finish(None);
                this.ended = true;
                let rest = this.scrub.finish();
                if rest.is_empty() {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Ok(Frame::data(rest))))
                }
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let msg = format!("the backend sent nothing for {:?}", this.idle);
                    this.finish(Some("upstream_idle_timeout".into()));
                    Poll::Ready(Some(Err(msg.into())))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        if let Some(p) = self.pending.as_mut() {
            // Dropped before the end: the agent went away mid-stream.
            p.rec.client_disconnected = true;
        }
        self.finish(None);
    }
}

/// Boxes a backend's body.
pub fn boxed(b: Incoming) -> BoxBody {
    b.map_err(|e| -> BoxError { Box::new(e) }).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_from_split_sse_lines() {
        let mut u = SseUsage::default();
        u.feed(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"choices\":[],\"us",
        );
        u.feed(b"age\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n");
        assert_eq!((u.prompt, u.completion), (Some(7), Some(3)));
        let mut a = SseUsage::default();
        a.feed(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5,\"output_tokens\":0}}}\n\n");
        a.feed(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":9}}\n\n");
        assert_eq!((a.prompt, a.completion), (Some(5), Some(9)));
    }
}
