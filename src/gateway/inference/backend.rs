//! The backends a route names, behind one entry point: [`BackendSpec::send`] answers a request
//! from an HTTP backend (the OpenAI or Anthropic API, through [`super::upstream`]) or from the
//! built-in [`super::mock`], and the router treats every kind the same way.

use std::time::Duration;

use bytes::Bytes;
use hyper::http::response;
use hyper::{header, HeaderMap, Response};
use serde_json::{Map, Value};

use super::mock::{MockBackend, MockResponse};
use super::upstream::{self, HttpClient};
use super::validate::Endpoint;
use super::BoxBody;
use crate::blueprint::BackendKind;
use crate::gateway::credentials::Secret;

/// Where a backend is.
#[derive(Debug)]
pub enum Target {
    Http {
        /// `scheme://authority` plus the base path without a trailing `/` (`http://h:8000/v1`).
        base: String,
        authority: String,
    },
    Mock(MockBackend),
}

/// One backend of the compiled policy.
pub struct BackendSpec {
    pub name: String,
    pub kind: BackendKind,
    pub target: Target,
    pub timeout: Duration,
    pub key: Option<Secret>,
}

/// One request on its way to a backend (after validation, guards and the model rewrite).
pub struct Call<'a> {
    pub client: &'a HttpClient,
    pub endpoint: Endpoint,
    /// The request body as sent.
    pub body: &'a Map<String, Value>,
    /// `body` encoded as JSON.
    pub bytes: Bytes,
    /// The agent's request headers (a few are passed on).
    pub headers: &'a HeaderMap,
    pub request_id: &'a str,
}

/// A backend's answer, whatever its kind.
pub struct Reply {
    pub status: u16,
    /// The response to the agent, with the status and the content type set.
    pub head: response::Builder,
    pub body: BoxBody,
    /// A server-sent event stream, passed on as it comes.
    pub streamed: bool,
}

/// Why a backend was skipped (the next one in the route's chain is tried).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("connection failed")]
    Connect(#[source] hyper_util::client::legacy::Error),
    #[error("connection failed")]
    Request(#[source] hyper::http::Error),
    #[error("connection failed: the key is not a valid header value")]
    BadKey,
    #[error("no answer within {0:?} (the backend's timeout)")]
    Timeout(Duration),
    #[error("answered HTTP {0}")]
    Status(u16),
}

/// The content type of server-sent events.
pub const EVENT_STREAM: &str = "text/event-stream";

impl BackendSpec {
    /// Whether this backend can serve `endpoint` (no translation between the two APIs).
    pub fn serves(&self, endpoint: Endpoint) -> bool {
        match self.kind {
            BackendKind::Mock => true,
            BackendKind::Anthropic => endpoint == Endpoint::Messages,
            BackendKind::Openai => endpoint != Endpoint::Messages,
        }
    }

    /// Sends `call` to this backend; `Err` when it failed in a way that falls back.
    pub async fn send(&self, call: &Call<'_>) -> Result<Reply, Failure> {
        match &self.target {
            Target::Http { base, authority } => upstream::send(self, base, authority, call).await,
            Target::Mock(m) => Ok(mock_reply(m.respond(call.endpoint, call.body).await)),
        }
    }
}

fn mock_reply(r: MockResponse) -> Reply {
    Reply {
        status: r.status,
        head: Response::builder()
            .status(r.status)
            .header(header::CONTENT_TYPE, r.content_type),
        body: r.body,
        streamed: r.content_type == EVENT_STREAM,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use serde_json::json;

    #[tokio::test]
    async fn the_mock_answers_through_the_same_entry_point() {
        let mock = BackendSpec {
            name: "m".into(),
            kind: BackendKind::Mock,
            target: Target::Mock(MockBackend::default()),
            timeout: Duration::from_secs(5),
            key: None,
        };
        let client = upstream::client(None).unwrap();
        let headers = HeaderMap::new();
        let ask = |stream: bool| {
            json!({"model": "m-1", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
                .as_object()
                .cloned()
                .unwrap()
        };
        for stream in [false, true] {
            let body = ask(stream);
            let call = Call {
                client: &client,
                endpoint: Endpoint::Chat,
                body: &body,
                bytes: Bytes::new(),
                headers: &headers,
                request_id: "r-1",
            };
            let Ok(reply) = mock.send(&call).await else {
                panic!("the mock never fails")
            };
            assert_eq!((reply.status, reply.streamed), (200, stream));
            let text = reply.body.collect().await.unwrap().to_bytes();
            let text = String::from_utf8_lossy(&text);
            assert!(text.contains("Mock") && text.contains("hi"), "{text}");
            assert_eq!(text.contains("data: [DONE]"), stream, "{text}");
        }
    }
}
