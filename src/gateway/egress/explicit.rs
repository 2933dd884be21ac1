//! The explicit proxy (`HTTP_PROXY` / `HTTPS_PROXY`): CONNECT tunnels and absolute-form HTTP.
//! Denials are `403` with `{"error":"policy_denied","host","port","rule","hint"}`.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::relay::{relay_copy, relay_pipelined};
use super::{Egress, EgressRecord, Outcome};
use crate::policy::Decision;

type ProxyBody = BoxBody<Bytes, hyper::Error>;

pub(crate) async fn accept_loop(listener: TcpListener, egress: Arc<Egress>) {
    super::accept::serve(listener, "explicit proxy", move |stream| {
        serve_connection(stream, egress.clone())
    })
    .await
}

/// Serves one agent connection to the proxy (HTTP/1, with CONNECT upgrades).
async fn serve_connection(stream: TcpStream, egress: Arc<Egress>) {
    let _ = stream.set_nodelay(true);
    let svc = hyper::service::service_fn(move |req| handle(req, egress.clone()));
    let conn = hyper::server::conn::http1::Builder::new()
        .preserve_header_case(true)
        .title_case_headers(true)
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "explicit proxy connection");
    }
}

fn json_response(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // A refusal ends the conversation: clients see the body, then EOF.
    r.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    r
}

fn empty() -> ProxyBody {
    Empty::new()
        .map_err(|never: Infallible| match never {})
        .boxed()
}

fn unreachable_body(host: &str, port: u16, detail: &str) -> String {
    serde_json::json!({"error": "upstream_unreachable", "host": host, "port": port, "detail": detail}).to_string()
}

async fn handle(
    req: Request<Incoming>,
    egress: Arc<Egress>,
) -> Result<Response<ProxyBody>, Infallible> {
    if req.method() == Method::CONNECT {
        return Ok(connect(req, egress).await);
    }
    Ok(forward(req, egress).await)
}

/// Logs a denial and answers the 403.
fn deny(egress: &Egress, d: Decision, started: Instant) -> Response<ProxyBody> {
    egress
        .log
        .write(&egress.record("explicit", &d).took(started.elapsed()));
    json_response(StatusCode::FORBIDDEN, d.denial_body())
}

/// Logs an allowed name that does not resolve and answers the 502.
fn unresolved(egress: &Egress, d: Decision, why: String, started: Instant) -> Response<ProxyBody> {
    let mut rec = egress.record("explicit", &d).took(started.elapsed());
    rec.error = Some(why.clone());
    egress.log.write(&rec);
    json_response(
        StatusCode::BAD_GATEWAY,
        unreachable_body(&d.host, d.port, &why),
    )
}

async fn connect(req: Request<Incoming>, egress: Arc<Egress>) -> Response<ProxyBody> {
    let started = Instant::now();
    let Some(auth) = req.uri().authority().cloned() else {
        return json_response(
            StatusCode::BAD_REQUEST,
            r#"{"error":"bad_request","detail":"CONNECT needs host:port"}"#.into(),
        );
    };
    let port = auth.port_u16().unwrap_or(443);
    let (d, addr) = match egress.decide(auth.host(), port).await {
        Outcome::Allow(d, addr) => (d, addr),
        Outcome::Deny(d) => return deny(&egress, d, started),
        Outcome::Unresolved(d, why) => return unresolved(&egress, d, why, started),
    };
    let upstream = match egress.dial(addr).await {
        Ok(s) => s,
        Err(e) => {
            let mut rec = egress.record("explicit", &d).took(started.elapsed());
            rec.addr = Some(addr.to_string());
            rec.error = Some(e.to_string());
            egress.log.write(&rec);
            return json_response(
                StatusCode::BAD_GATEWAY,
                unreachable_body(&d.host, port, &e.to_string()),
            );
        }
    };
    let mut rec = egress.record("explicit", &d);
    rec.addr = Some(addr.to_string());
    tokio::spawn(async move {
        let (moved, err) = match hyper::upgrade::on(req).await {
            Ok(upgraded) => tunnel(upgraded, upstream).await,
            Err(e) => (Default::default(), Some(std::io::Error::other(e))),
        };
        rec.bytes_out = moved.out;
        rec.bytes_in = moved.in_;
        rec.error = err.map(|e| e.to_string());
        egress.log.write(&rec.took(started.elapsed()));
    });
    Response::new(empty())
}

/// Relays the upgraded client connection: the pipelined socket relay when hyper hands the raw
/// socket back, a buffered copy otherwise.
async fn tunnel(
    upgraded: hyper::upgrade::Upgraded,
    mut upstream: TcpStream,
) -> (super::relay::Moved, Option<std::io::Error>) {
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            let agent = parts.io.into_inner();
            let early = parts.read_buf.len() as u64;
            if !parts.read_buf.is_empty() {
                if let Err(e) = upstream.write_all(&parts.read_buf).await {
                    return (Default::default(), Some(e));
                }
            }
            let (mut moved, err) = relay_pipelined(agent, upstream).await;
            moved.out += early;
            (moved, err)
        }
        Err(upgraded) => relay_copy(&mut TokioIo::new(upgraded), &mut upstream).await,
    }
}

/// Absolute-form HTTP (`GET http://host/path`): decided per request, sent upstream in
/// origin form on a fresh connection.
async fn forward(mut req: Request<Incoming>, egress: Arc<Egress>) -> Response<ProxyBody> {
    let started = Instant::now();
    let uri = req.uri().clone();
    let (Some(host), Some("http")) = (uri.host(), uri.scheme_str()) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            r#"{"error":"bad_request","detail":"this is a proxy: send absolute-form http:// requests or CONNECT"}"#.into(),
        );
    };
    let port = uri.port_u16().unwrap_or(80);
    let (d, addr) = match egress.decide(host, port).await {
        Outcome::Allow(d, addr) => (d, addr),
        Outcome::Deny(d) => return deny(&egress, d, started),
        Outcome::Unresolved(d, why) => return unresolved(&egress, d, why, started),
    };
    let mut rec = egress.record("explicit", &d);
    rec.addr = Some(addr.to_string());
    let fail = |mut rec: EgressRecord, e: String| {
        rec.error = Some(e.clone());
        egress.log.write(&rec.took(started.elapsed()));
        json_response(StatusCode::BAD_GATEWAY, unreachable_body(&d.host, port, &e))
    };
    let upstream = match egress.dial(addr).await {
        Ok(s) => s,
        Err(e) => return fail(rec, e.to_string()),
    };
    let (mut sender, conn) = match hyper::client::conn::http1::Builder::new()
        .preserve_header_case(true)
        .title_case_headers(true)
        .handshake(TokioIo::new(upstream))
        .await
    {
        Ok(x) => x,
        Err(e) => return fail(rec, e.to_string()),
    };
    tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    *req.uri_mut() = path.parse().unwrap_or_default();
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default();
    if !req.headers().contains_key(HOST) {
        if let Ok(v) = HeaderValue::from_str(&authority) {
            req.headers_mut().insert(HOST, v);
        }
    }
    for h in [
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
    ] {
        req.headers_mut().remove(h);
    }
    rec.bytes_out = req.body().size_hint().exact().unwrap_or(0);
    match sender.send_request(req).await {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            let counted = Counted {
                inner: body,
                rec: Some(rec),
                egress: egress.clone(),
                started,
            };
            Response::from_parts(parts, counted.boxed())
        }
        Err(e) => fail(rec, e.to_string()),
    }
}

/// A response body that counts what it passes and logs the decision when it is dropped.
struct Counted {
    inner: Incoming,
    rec: Option<EgressRecord>,
    egress: Arc<Egress>,
    started: Instant,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let res = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &res {
            if let (Some(data), Some(rec)) = (frame.data_ref(), this.rec.as_mut()) {
                rec.bytes_in += data.len() as u64;
            }
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(rec) = self.rec.take() {
            self.egress.log.write(&rec.took(self.started.elapsed()));
        }
    }
}
