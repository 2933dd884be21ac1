//! The built-in `mock` backend: deterministic OpenAI- and Anthropic-shaped replies, scripted
//! replies from a file, streaming, and configurable latency. The quickstart runs on it, the
//! tests use it, and `nemoclaw gateway mock-backend` serves it alone over HTTP (the benchmark's
//! fast backend).
//!
//! Replies file (YAML or JSON, relative to the blueprint):
//! ```yaml
//! replies:
//!   - match: weather          # substring of the user's turn (its messages since the last answer)
//!     reply: It is sunny.
//!   - match: what did I say
//!     echo: history           # every user message of the request, joined by "\n---\n"
//!   - reply: I am a mock.     # no match: the default
//! ```
//! Each entry has exactly one of `reply` and `echo`.
//! Without a file (or a matching entry) the reply is `Mock reply to: <the user's turn>`.
//! The reply is cut to `max_tokens` words (`finish_reason: length`), its whitespace kept as written.

use std::collections::VecDeque;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::error::{InferenceError, RepliesError};
use super::guard::prompt_text;
use super::limits::unix_now;
use super::validate::Endpoint;
use super::BoxBody;
use crate::blueprint::MockSettings;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedReply {
    #[serde(rename = "match", default)]
    pub pattern: Option<String>,
    /// A fixed reply.
    #[serde(default)]
    pub reply: Option<String>,
    /// A reply made from the request.
    #[serde(default)]
    pub echo: Option<Echo>,
}

/// What an `echo` reply repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Echo {
    /// Every user message of the request, in order, joined by [`HISTORY_SEPARATOR`].
    History,
}

/// Between the user messages of an `echo: history` reply.
pub const HISTORY_SEPARATOR: &str = "\n---\n";

impl ScriptedReply {
    /// The reply for `body` when this entry applies, `None` when it does not.
    fn answer(&self, body: &Map<String, Value>, last: &str) -> Option<String> {
        if self
            .pattern
            .as_ref()
            .is_some_and(|p| !last.contains(p.as_str()))
        {
            return None;
        }
        match (&self.reply, self.echo) {
            (Some(text), _) => Some(text.clone()),
            (None, Some(Echo::History)) => Some(user_texts(body).join(HISTORY_SEPARATOR)),
            (None, None) => None,
        }
    }
}

/// Every entry has exactly one of `reply` and `echo`.
fn check_replies(replies: &[ScriptedReply]) -> Result<(), RepliesError> {
    match replies
        .iter()
        .position(|r| r.reply.is_some() == r.echo.is_some())
    {
        Some(index) => Err(RepliesError::ReplyOrEcho { index }),
        None => Ok(()),
    }
}

/// A replies file is `{replies: [...]}` or the list alone.
#[derive(Deserialize)]
struct Wrapped {
    replies: Vec<ScriptedReply>,
}

/// The entries of a replies file, each with exactly one of `reply` and `echo`; a bad entry's
/// error is its own (with its position), not "matches neither form".
fn parse_replies(text: &str) -> Result<Vec<ScriptedReply>, RepliesError> {
    let top: Value = serde_saphyr::from_str(text).map_err(RepliesError::Parse)?;
    let replies = if top.is_object() {
        serde_saphyr::from_str::<Wrapped>(text).map(|w| w.replies)
    } else {
        serde_saphyr::from_str(text)
    }
    .map_err(RepliesError::Parse)?;
    check_replies(&replies)?;
    Ok(replies)
}

/// One mock backend.
#[derive(Debug, Default)]
pub struct MockBackend {
    replies: Vec<ScriptedReply>,
    latency: Duration,
    served: AtomicU64,
}

/// A mock answer: status, content type and body.
pub struct MockResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: BoxBody,
}

impl MockBackend {
    pub fn new(replies: Vec<ScriptedReply>, latency: Duration) -> MockBackend {
        MockBackend {
            replies,
            latency,
            served: AtomicU64::new(0),
        }
    }

    /// From the blueprint's `mock` settings; `base_dir` resolves the replies file.
    pub fn load(
        backend: &str,
        settings: Option<&MockSettings>,
        base_dir: &Path,
    ) -> Result<MockBackend, InferenceError> {
        let Some(s) = settings else {
            return Ok(MockBackend::default());
        };
        let replies = match &s.replies {
            None => vec![],
            Some(p) => {
                let path = if p.is_absolute() {
                    p.clone()
                } else {
                    base_dir.join(p)
                };
                let err = |source: RepliesError| InferenceError::MockReplies {
                    backend: backend.into(),
                    path: path.clone(),
                    source,
                };
                let text =
                    std::fs::read_to_string(&path).map_err(|e| err(RepliesError::Read(e)))?;
                parse_replies(&text).map_err(err)?
            }
        };
        Ok(MockBackend::new(
            replies,
            s.latency.map(|d| d.as_duration()).unwrap_or_default(),
        ))
    }

    /// The reply text for a request (deterministic).
    pub fn reply_text(&self, body: &Map<String, Value>) -> String {
        let last = last_user_text(body);
        if let Some(text) = self.replies.iter().find_map(|r| r.answer(body, &last)) {
            return text;
        }
        let short: String = last.chars().take(80).collect();
        format!("Mock reply to: {short}")
    }

    /// Answers one request as the real API would.
    pub async fn respond(&self, endpoint: Endpoint, body: &Map<String, Value>) -> MockResponse {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let n = self.served.fetch_add(1, Ordering::Relaxed);
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("mock")
            .to_string();
        let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let prompt_tokens = words(&prompt_text(body)).max(1);
        let max = body
            .get("max_tokens")
            .or_else(|| body.get("max_completion_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(u64::MAX);
        let full = self.reply_text(body);
        let (pieces, cut) = word_pieces(&full, usize::try_from(max).unwrap_or(usize::MAX));
        let text = pieces.concat();
        let completion_tokens = pieces.len() as u64;
        let finish = if cut { "length" } else { "stop" };
        let id = format!("mock-{n}");
        let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens});
        let created = unix_now();
        match (endpoint, stream) {
            (Endpoint::Chat, false) => json_response(json!({
                "id": format!("chatcmpl-{id}"), "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish, "logprobs": null}],
                "usage": usage,
            })),
            (Endpoint::Completions, false) => json_response(json!({
                "id": format!("cmpl-{id}"), "object": "text_completion", "created": created, "model": model,
                "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": null}],
                "usage": usage,
            })),
            (Endpoint::Messages, false) => json_response(json!({
                "id": format!("msg_{id}"), "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": if cut { "max_tokens" } else { "end_turn" }, "stop_sequence": null,
                "usage": {"input_tokens": prompt_tokens, "output_tokens": completion_tokens},
            })),
            (Endpoint::Chat | Endpoint::Completions, true) => {
                let chat = endpoint == Endpoint::Chat;
                let include_usage = body
                    .get("stream_options")
                    .and_then(|o| o.get("include_usage"))
                    .and_then(Value::as_bool)
                    == Some(true);
                let (obj, id) = if chat {
                    ("chat.completion.chunk", format!("chatcmpl-{id}"))
                } else {
                    ("text_completion", format!("cmpl-{id}"))
                };
                let chunk = |choice: Value| json!({"id": id, "object": obj, "created": created, "model": model, "choices": [choice]});
                let mut events = Vec::new();
                if chat {
                    events.push(chunk(json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null})));
                }
                for piece in &pieces {
                    events.push(if chat {
                        chunk(
                            json!({"index": 0, "delta": {"content": piece}, "finish_reason": null}),
                        )
                    } else {
                        chunk(json!({"index": 0, "text": piece, "finish_reason": null}))
                    });
                }
                events.push(if chat {
                    chunk(json!({"index": 0, "delta": {}, "finish_reason": finish}))
                } else {
                    chunk(json!({"index": 0, "text": "", "finish_reason": finish}))
                });
                if include_usage {
                    events.push(json!({"id": id, "object": obj, "created": created, "model": model, "choices": [], "usage": usage}));
                }
                let mut frames: VecDeque<Bytes> = events
                    .iter()
                    .map(|e| Bytes::from(format!("data: {e}\n\n")))
                    .collect();
                frames.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
                sse_response(frames)
            }
            (Endpoint::Messages, true) => {
                let ev =
                    |name: &str, v: Value| Bytes::from(format!("event: {name}\ndata: {v}\n\n"));
                let mut frames = VecDeque::new();
                frames.push_back(ev("message_start", json!({"type": "message_start", "message": {"id": format!("msg_{id}"), "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "usage": {"input_tokens": prompt_tokens, "output_tokens": 0}}})));
                frames.push_back(ev("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
                for piece in &pieces {
                    frames.push_back(ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}})));
                }
                frames.push_back(ev(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": 0}),
                ));
                frames.push_back(ev("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": if cut { "max_tokens" } else { "end_turn" }}, "usage": {"output_tokens": completion_tokens}})));
                frames.push_back(ev("message_stop", json!({"type": "message_stop"})));
                sse_response(frames)
            }
            (Endpoint::Embeddings, _) => json_response(embeddings(body, &model, prompt_tokens)),
        }
    }
}

/// Serves one connection with the mock alone (no gateway policy): `nemoclaw gateway
/// mock-backend`, the benchmark's fast backend.
pub async fn serve_connection(backend: std::sync::Arc<MockBackend>, stream: tokio::net::TcpStream) {
    let _ = stream.set_nodelay(true);
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let backend = backend.clone();
        async move {
            let ep = Endpoint::from_path(req.uri().path());
            let body = req
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let resp = match (ep, serde_json::from_slice::<Value>(&body)) {
                (Some(ep), Ok(Value::Object(m))) => {
                    let r = backend.respond(ep, &m).await;
                    hyper::Response::builder()
                        .status(r.status)
                        .header("content-type", r.content_type)
                        .body(r.body)
                }
                (None, _) => hyper::Response::builder()
                    .status(404)
                    .body(json_response(json!({"error": {"message": "unknown path"}})).body),
                (Some(_), _) => hyper::Response::builder()
                    .status(400)
                    .body(json_response(json!({"error": {"message": "bad JSON"}})).body),
            };
            Ok::<_, std::convert::Infallible>(resp.expect("a valid response"))
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
        .await;
}

fn embeddings(body: &Map<String, Value>, model: &str, prompt_tokens: u64) -> Value {
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(v) => vec![v.to_string()],
        None => vec![],
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": vector(t)}))
        .collect();
    json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}})
}

/// A unit vector of 16 dimensions derived from the text (FNV-1a).
fn vector(text: &str) -> Vec<f64> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut v = Vec::with_capacity(16);
    for i in 0..16u64 {
        for b in text.bytes().chain(i.to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        v.push((h % 2000) as f64 / 1000.0 - 1.0);
    }
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-9);
    v.into_iter()
        .map(|x| (x / norm * 1e6).round() / 1e6)
        .collect()
}

/// The first `max` words of `full` as pieces that keep the whitespace before each word (the
/// first starts at its word), so together they are the text as written (a reply's newlines
/// survive); and whether words were cut.
fn word_pieces(full: &str, max: usize) -> (Vec<&str>, bool) {
    let mut pieces = Vec::new();
    let mut prev_end = None;
    for w in full.split_whitespace() {
        if pieces.len() == max {
            return (pieces, true);
        }
        let start = w.as_ptr() as usize - full.as_ptr() as usize;
        let end = start + w.len();
        pieces.push(&full[prev_end.unwrap_or(start)..end]);
        prev_end = Some(end);
    }
    (pieces, false)
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// The user's current turn: every user message after the last assistant message, joined by
/// newlines (an agent may send its user's words and its own context as two user messages, as
/// OpenClaw does); a request without messages gives its whole prompt text.
fn last_user_text(body: &Map<String, Value>) -> String {
    let Some(Value::Array(msgs)) = body.get("messages") else {
        return prompt_text(body).trim_end().to_string();
    };
    let start = msgs
        .iter()
        .rposition(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))
        .map_or(0, |i| i + 1);
    let turn = Map::from_iter([("messages".to_string(), Value::Array(msgs[start..].to_vec()))]);
    user_texts(&turn).join("\n")
}

/// The text of every user message (string or array-of-parts content), in order; a request
/// without user messages (a completion's `prompt`) gives its whole prompt text.
fn user_texts(body: &Map<String, Value>) -> Vec<String> {
    let users: Vec<String> = match body.get("messages") {
        Some(Value::Array(msgs)) => msgs
            .iter()
            .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .map(|m| {
                let mut one = Map::new();
                one.insert("messages".into(), Value::Array(vec![m.clone()]));
                prompt_text(&one).trim_end().to_string()
            })
            .collect(),
        _ => vec![],
    };
    if users.is_empty() {
        return vec![prompt_text(body).trim_end().to_string()];
    }
    users
}

fn json_response(v: Value) -> MockResponse {
    let body = http_body_util::Full::new(Bytes::from(v.to_string()))
        .map_err(|never| match never {})
        .boxed();
    MockResponse {
        status: 200,
        content_type: "application/json",
        body,
    }
}

fn sse_response(frames: VecDeque<Bytes>) -> MockResponse {
    MockResponse {
        status: 200,
        content_type: "text/event-stream",
        body: Chunks(frames).boxed(),
    }
}

/// A body that yields its chunks one frame at a time.
struct Chunks(VecDeque<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = super::BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(r: MockResponse) -> String {
        String::from_utf8(r.body.collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    fn req(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[tokio::test]
    async fn scripted_and_default_replies_are_deterministic() {
        let m = MockBackend::new(
            vec![ScriptedReply {
                pattern: Some("weather".into()),
                reply: Some("It is sunny today".into()),
                echo: None,
            }],
            Duration::ZERO,
        );
        let b = req(
            json!({"model":"mock-1","messages":[{"role":"user","content":"what is the weather"}]}),
        );
        let v: Value =
            serde_json::from_str(&collect(m.respond(Endpoint::Chat, &b).await).await).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "It is sunny today");
        assert_eq!(v["usage"]["completion_tokens"], 4);
        let b = req(
            json!({"model":"mock-1","messages":[{"role":"user","content":"hello"}],"max_tokens":2}),
        );
        let v: Value =
            serde_json::from_str(&collect(m.respond(Endpoint::Chat, &b).await).await).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "Mock reply");
        assert_eq!(v["choices"][0]["finish_reason"], "length");
    }

    #[test]
    fn a_match_sees_the_whole_turn_of_an_agent_that_splits_it() {
        let m = MockBackend::new(
            vec![ScriptedReply {
                pattern: Some("PAPAYA".into()),
                reply: Some("matched".into()),
                echo: None,
            }],
            Duration::ZERO,
        );
        // OpenClaw: the user's words, then its own context, as two user messages.
        let split = req(json!({"messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "an earlier PAPAYA"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "Remember PAPAYA-42"},
            {"role": "user", "content": [{"type": "text", "text": "<<<CONTEXT>>>"}]},
        ]}));
        assert_eq!(m.reply_text(&split), "matched");
        // A match in an earlier turn only does not count.
        let old = req(json!({"messages": [
            {"role": "user", "content": "PAPAYA"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "something else"},
        ]}));
        assert_eq!(m.reply_text(&old), "Mock reply to: something else");
    }

    #[tokio::test]
    async fn streams_end_with_usage_and_done() {
        let m = MockBackend::default();
        let b = req(
            json!({"model":"mock-1","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}),
        );
        let r = m.respond(Endpoint::Chat, &b).await;
        assert_eq!(r.content_type, "text/event-stream");
        let text = collect(r).await;
        assert!(text.ends_with("data: [DONE]\n\n"));
        assert!(text.contains(r#""completion_tokens":4"#), "{text}");
        let e = req(json!({"model":"e","input":["a","b"]}));
        let v: Value =
            serde_json::from_str(&collect(m.respond(Endpoint::Embeddings, &e).await).await)
                .unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 16);
    }

    fn load_replies(dir: &Path, text: &str) -> Result<MockBackend, InferenceError> {
        std::fs::write(dir.join("replies.yaml"), text).unwrap();
        let settings = MockSettings {
            replies: Some("replies.yaml".into()),
            latency: None,
        };
        MockBackend::load("mock", Some(&settings), dir)
    }

    #[tokio::test]
    async fn echo_history_repeats_every_user_message_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let m = load_replies(
            dir.path(),
            "replies:\n  - match: weather\n    reply: sunny\n  - match: what did I say\n    echo: history\n",
        )
        .unwrap();
        let b = req(json!({"model": "m", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "my name is Ada"},
            {"role": "assistant", "content": "hello Ada"},
            {"role": "user", "content": [{"type": "text", "text": "what did I say"}, {"type": "text", "text": "earlier?"}]},
        ]}));
        assert_eq!(
            m.reply_text(&b),
            "my name is Ada\n---\nwhat did I say\nearlier?",
            "user turns only, parts joined, turns separated"
        );
        let v: Value =
            serde_json::from_str(&collect(m.respond(Endpoint::Messages, &b).await).await).unwrap();
        assert_eq!(
            v["content"][0]["text"], "my name is Ada\n---\nwhat did I say\nearlier?",
            "the reply's newlines survive"
        );
        let one = req(json!({"model": "m", "messages": [{"role": "user", "content": "weather?"}]}));
        assert_eq!(m.reply_text(&one), "sunny", "the first matching entry wins");
        let other = req(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(m.reply_text(&other), "Mock reply to: hi");
    }

    #[test]
    fn word_pieces_keep_the_whitespace_between_words() {
        assert_eq!(
            word_pieces("  a  b\nc ", 9),
            (vec!["a", "  b", "\nc"], false)
        );
        assert_eq!(word_pieces("a b\nc", 2), (vec!["a", " b"], true));
        assert_eq!(word_pieces("", 3), (vec![], false));
    }

    #[test]
    fn an_entry_needs_exactly_one_of_reply_and_echo() {
        let dir = tempfile::tempdir().unwrap();
        for (text, want) in [
            (
                "- reply: a\n  echo: history\n",
                "replies[0]: give exactly one of `reply`",
            ),
            (
                "- reply: a\n- match: x\n",
                "replies[1]: give exactly one of `reply`",
            ),
            ("- echo: everything\n", "everything"),
        ] {
            let e = crate::error_chain(&load_replies(dir.path(), text).unwrap_err());
            assert!(e.contains("replies.yaml"), "{e}");
            assert!(e.contains(want), "{text:?}: {e}");
        }
        assert!(load_replies(dir.path(), "- echo: history\n- reply: b\n").is_ok());
    }
}
