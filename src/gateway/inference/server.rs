//! The HTTP side: one hyper connection per agent connection, and the request path
//! (admission, body, validation, guards, routing with fallback, response, log line).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response};
use serde_json::{Map, Value};

use super::backend::{BackendSpec, Call, Failure, Reply};
use super::error::ApiError;
use super::guard::SecretGuard;
use super::log::{ms, Pending};
use super::policy::Policy;
use super::upstream::Observed;
use super::validate::{self, Endpoint};
use super::{BoxBody, BoxError, Shared, State};

/// Largest non-streamed response read from a backend.
const MAX_RESPONSE: usize = 64 << 20;

pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<BoxBody>, Infallible> {
    let state = shared.state();
    let id = shared.next_id();
    let path = req.uri().path().to_string();
    let endpoint = Endpoint::from_path(&path);
    let mut p = Pending::new(
        shared.clone(),
        id.clone(),
        endpoint.map_or("other", Endpoint::name),
    );
    let resp = match (req.method(), path.as_str(), endpoint) {
        (&Method::GET, "/v1/models", _) => {
            p.rec.endpoint = "models";
            p.rec.status = 200;
            json(200, models(&state))
        }
        (&Method::POST, _, Some(ep)) => match infer(&shared, &state, ep, req, &mut p).await {
            Ok(r) => return Ok(with_id(r, &id)),
            Err(e) => error(&mut p, e),
        },
        (_, _, Some(_)) | (_, "/v1/models", _) => error(
            &mut p,
            ApiError::new(
                405,
                "invalid_request_error",
                "method_not_allowed",
                format!("{} is not allowed on {path}", req.method()),
            ),
        ),
        _ => error(&mut p, ApiError::not_found(&path)),
    };
    Ok(with_id(resp, &id))
}

fn with_id(mut r: Response<BoxBody>, id: &str) -> Response<BoxBody> {
    if let Ok(v) = header::HeaderValue::from_str(id) {
        r.headers_mut().insert("x-request-id", v);
    }
    r
}

fn models(state: &State) -> String {
    let data: Vec<Value> = state
        .policy
        .allowed
        .entries()
        .iter()
        .filter(|m| !m.ends_with('*'))
        .map(|m| serde_json::json!({"id": m, "object": "model", "created": 0, "owned_by": "nemoclaw"}))
        .collect();
    serde_json::json!({"object": "list", "data": data}).to_string()
}

fn json(status: u16, body: String) -> Response<BoxBody> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(Bytes::from(body)))
        .expect("a valid response: an HTTP status of ours and a static content type")
}

fn full(b: Bytes) -> BoxBody {
    Full::new(b).map_err(|never| match never {}).boxed()
}

fn error(p: &mut Pending, e: ApiError) -> Response<BoxBody> {
    p.rec.status = e.status;
    p.rec.error = Some(e.code.to_string());
    let mut r = json(e.status, e.body());
    if let Some(s) = e.retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(s));
    }
    r
}

/// The inference path; `p` is logged when dropped (for a stream: when the stream ends).
async fn infer(
    shared: &Shared,
    state: &State,
    ep: Endpoint,
    req: Request<Incoming>,
    p: &mut Pending,
) -> Result<Response<BoxBody>, ApiError> {
    let policy = &state.policy;
    let max = policy.limits.max_request_size;
    check_content_type(req.headers())?;
    check_declared_size(req.headers(), max)?;
    state.limiter.admit()?;
    let (parts, body) = req.into_parts();
    let body = read_request(body, max, shared.options.body_read_timeout).await?;
    let v = validate::validate(ep, &body, &policy.limits, &policy.allowed)?;
    p.rec.model = Some(v.model.clone());
    p.rec.stream = v.stream;
    refuse_unguardable_stream(policy, v.stream)?;
    let mut req_body = v.body;
    run_request_guards(policy, ep, &v.model, &mut req_body, p)?;
    let chain = route(policy, ep, &v.model, &mut req_body, p)?;
    let id = p.rec.id.clone();
    let call = Call {
        client: &shared.client,
        endpoint: ep,
        bytes: encode(policy, &req_body, p),
        body: &req_body,
        headers: &parts.headers,
        request_id: &id,
    };
    forward(state, &call, &v.model, &chain, p).await
}

/// 415 unless the body is declared as JSON.
fn check_content_type(headers: &hyper::HeaderMap) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return Ok(());
    }
    let shown = if ct.is_empty() {
        "none".to_string()
    } else {
        format!("`{}`", ct.chars().take(100).collect::<String>())
    };
    Err(ApiError {
        status: 415,
        ..ApiError::invalid(
            "unsupported_media_type",
            None,
            format!("Content-Type must be application/json (got {shown})"),
        )
    })
}

/// 413 at once when the declared length is over the limit.
fn check_declared_size(headers: &hyper::HeaderMap, max: u64) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared.filter(|n| *n > max) {
        Some(n) => Err(validate::too_large(n, max)),
        None => Ok(()),
    }
}

/// Reads the whole request body, at most `max` bytes within `timeout`.
async fn read_request(body: Incoming, max: u64, timeout: Duration) -> Result<Bytes, ApiError> {
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(ApiError {
            status: 408,
            ..ApiError::invalid(
                "request_timeout",
                None,
                format!("the request body did not arrive within {timeout:?}"),
            )
        }),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(validate::too_large(max + 1, max))
        }
        Ok(Err(e)) => Err(ApiError::invalid(
            "truncated_body",
            None,
            format!("the request body could not be read completely: {e}"),
        )),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// A response guard judges whole answers; a stream would pass it by. Fail closed.
fn refuse_unguardable_stream(policy: &Policy, stream: bool) -> Result<(), ApiError> {
    if stream && policy.guards.has_response_guards() {
        return Err(ApiError::invalid(
            "stream_with_response_guards",
            Some("stream"),
            "this sandbox's blueprint checks every model answer (inference.guards with onResponse), which needs whole answers: send the request with \"stream\": false",
        ));
    }
    Ok(())
}

/// The operator's request guards, then the secret guard; each may rewrite or deny.
fn run_request_guards(
    policy: &Policy,
    ep: Endpoint,
    model: &str,
    body: &mut Map<String, Value>,
    p: &mut Pending,
) -> Result<(), ApiError> {
    match policy.guards.on_request(ep.name(), model, body) {
        Ok(rewrote) => p.rec.guards.extend(
            rewrote
                .into_iter()
                .map(|g| format!("{g}: rewrote the request")),
        ),
        Err((guard, reason)) => {
            p.rec.guards.push(format!("{guard}: denied"));
            return Err(ApiError::forbidden(
                "guard_denied",
                None,
                format!("denied by guard {guard}: {reason}"),
            ));
        }
    }
    let Some(sg) = &policy.secret_guard else {
        return Ok(());
    };
    match sg.check(body) {
        Ok(r) if r.any() => p.rec.guards.push(r.describe()),
        Ok(_) => {}
        Err(reason) => {
            p.rec
                .guards
                .push("secret guard: denied (held credential)".into());
            return Err(ApiError::forbidden(
                "secret_guard",
                None,
                format!("denied by the secret guard: {reason}"),
            ));
        }
    }
    Ok(())
}

/// The backends to try, in order, among those that serve `ep`; renames the model for them.
fn route(
    policy: &Policy,
    ep: Endpoint,
    model: &str,
    body: &mut Map<String, Value>,
    p: &mut Pending,
) -> Result<Vec<usize>, ApiError> {
    let plan = super::route::plan(&policy.rules, model);
    let chain: Vec<usize> = plan
        .chain
        .iter()
        .copied()
        .filter(|&i| policy.backends[i].serves(ep))
        .collect();
    if chain.is_empty() {
        return Err(ApiError::invalid(
            "no_backend",
            Some("model"),
            format!("no backend for model `{model}` serves {}: add a backend of kind {} and route the model to it in inference.routes", ep.name(), if ep == Endpoint::Messages { "anthropic" } else { "openai" }),
        ));
    }
    if plan.upstream_model != model {
        body.insert("model".into(), Value::String(plan.upstream_model.clone()));
        p.rec.upstream_model = Some(plan.upstream_model);
    }
    Ok(chain)
}

/// The request as sent, logged (keys redacted) when the blueprint logs bodies.
fn encode(policy: &Policy, body: &Map<String, Value>, p: &mut Pending) -> Bytes {
    let bytes = Bytes::from(serde_json::to_vec(body).expect("a JSON map serialises"));
    if policy.log_bodies {
        p.rec.request_body = Some(
            policy
                .scrubber
                .redact_for_log(&String::from_utf8_lossy(&bytes)),
        );
    }
    bytes
}

/// Tries the backends of `chain` in order; the first that answers is passed on.
async fn forward(
    state: &State,
    call: &Call<'_>,
    model: &str,
    chain: &[usize],
    p: &mut Pending,
) -> Result<Response<BoxBody>, ApiError> {
    let policy = &state.policy;
    let mut timed_out = true;
    for &i in chain {
        let b = &policy.backends[i];
        p.rec.backend = Some(b.name.clone());
        let started = Instant::now();
        match b.send(call).await {
            Ok(reply) => return answer(state, call.endpoint, model, b, reply, started, p).await,
            Err(f) => {
                timed_out &= matches!(f, Failure::Timeout(_));
                let f = scrub(&policy.scrubber, &crate::error_chain(&f));
                tracing::debug!(backend = %b.name, "inference backend failed: {f}");
                p.rec.fallbacks.push(format!("{}: {f}", b.name));
            }
        }
    }
    Err(all_failed(timed_out, p))
}

/// Passes a backend's reply on: a stream as it comes, a whole answer through [`finish`].
async fn answer(
    state: &State,
    ep: Endpoint,
    model: &str,
    b: &BackendSpec,
    reply: Reply,
    started: Instant,
    p: &mut Pending,
) -> Result<Response<BoxBody>, ApiError> {
    let scrubber = &state.policy.scrubber;
    p.reached_backend = true;
    p.rec.status = reply.status;
    if reply.streamed {
        // Time to first token is taken at the first data chunk, in `Observed`.
        let scrub = scrubber.stream_scrub();
        return Ok(stream(reply.head, reply.body, scrub, p, b.timeout));
    }
    let body = read_answer(b, reply.body, started, scrubber).await?;
    p.mark_first_byte();
    finish(state, ep, model, reply.head, body, p)
}

/// Reads a whole (non-streamed) answer within what is left of the backend's timeout.
async fn read_answer(
    b: &BackendSpec,
    body: BoxBody,
    started: Instant,
    scrubber: &SecretGuard,
) -> Result<Bytes, ApiError> {
    let left = b.timeout.saturating_sub(started.elapsed());
    match tokio::time::timeout(left, collect_limited(body, MAX_RESPONSE)).await {
        Err(_) => Err(upstream_error(
            504,
            format!(
                "backend `{}` did not finish its answer within {:?}",
                b.name, b.timeout
            ),
        )),
        Ok(Err(e)) => Err(upstream_error(
            502,
            format!(
                "backend `{}` answer could not be read: {}",
                b.name,
                scrub(scrubber, &e.to_string())
            ),
        )),
        Ok(Ok(body)) => Ok(body),
    }
}

/// A whole body of at most `limit` bytes. Read frame by frame: `Limited` (and `?`) would ask
/// for `From<BoxError>`, which fails rustc's `Send` check of the connection task ("not general
/// enough" over the boxed error's lifetime).
async fn collect_limited(mut body: BoxBody, limit: usize) -> Result<Bytes, BoxError> {
    let mut out = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let data = match frame {
            Err(e) => return Err(e),
            Ok(f) => match f.into_data() {
                Ok(d) => d,
                Err(_trailers) => continue,
            },
        };
        if out.len() + data.len() > limit {
            return Err("length limit exceeded".into());
        }
        out.extend_from_slice(&data);
    }
    Ok(out.freeze())
}

/// 504 when every backend timed out, else 502; both list what each backend did.
fn all_failed(timed_out: bool, p: &mut Pending) -> ApiError {
    let tried = p.rec.fallbacks.join("; ");
    p.rec.backend = None;
    if timed_out {
        upstream_error(504, format!("no backend answered in time: {tried}"))
    } else {
        upstream_error(502, format!("every backend for this model failed: {tried}"))
    }
}

fn scrub(s: &SecretGuard, text: &str) -> String {
    if s.holds_key_in(text.as_bytes()) {
        s.redact_for_log(text)
    } else {
        text.to_string()
    }
}

fn upstream_error(status: u16, message: String) -> ApiError {
    ApiError::new(
        status,
        "api_error",
        if status == 504 {
            "backend_timeout"
        } else {
            "backend_unavailable"
        },
        message,
    )
}

fn stream(
    resp: hyper::http::response::Builder,
    body: BoxBody,
    scrub: super::scrub_stream::StreamScrub,
    p: &mut Pending,
    idle: Duration,
) -> Response<BoxBody> {
    let body = Observed::new(body, scrub, p.take(), idle);
    resp.body(BodyExt::boxed(body))
        .expect("a valid response: a backend reply's status and headers are valid HTTP")
}

/// A complete (non-streamed) answer: usage, response guards, key scrubbing.
fn finish(
    state: &State,
    ep: Endpoint,
    model: &str,
    resp: hyper::http::response::Builder,
    body: Bytes,
    p: &mut Pending,
) -> Result<Response<BoxBody>, ApiError> {
    let policy = &state.policy;
    let mut body = policy.scrubber.scrub_bytes(body);
    if p.rec.status < 300 {
        if let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(&body) {
            (p.rec.prompt_tokens, p.rec.completion_tokens) = usage_from(&map);
            if run_response_guards(policy, ep, model, &mut map, p)? {
                body = Bytes::from(serde_json::to_vec(&map).expect("a JSON map serialises"));
            }
        }
    }
    if policy.log_bodies {
        p.rec.response_body = Some(
            policy
                .scrubber
                .redact_for_log(&String::from_utf8_lossy(&body)),
        );
    }
    p.rec.ttft_ms.get_or_insert_with(|| ms(p.start));
    Ok(resp
        .body(full(body))
        .expect("a valid response: a backend reply's status and headers are valid HTTP"))
}

/// The guards marked `onResponse`, on a successful whole answer; whether one rewrote it.
fn run_response_guards(
    policy: &Policy,
    ep: Endpoint,
    model: &str,
    answer: &mut Map<String, Value>,
    p: &mut Pending,
) -> Result<bool, ApiError> {
    if !policy.guards.has_response_guards() {
        return Ok(false);
    }
    match policy.guards.on_response(ep.name(), model, answer) {
        Ok(rewrote) => {
            let any = !rewrote.is_empty();
            p.rec.guards.extend(
                rewrote
                    .into_iter()
                    .map(|g| format!("{g}: rewrote the response")),
            );
            Ok(any)
        }
        Err((guard, reason)) => {
            p.rec.guards.push(format!("{guard}: denied the response"));
            Err(ApiError::forbidden(
                "guard_denied",
                None,
                format!("response denied by guard {guard}: {reason}"),
            ))
        }
    }
}

fn usage_from(map: &Map<String, Value>) -> (Option<u64>, Option<u64>) {
    map.get("usage")
        .map_or((None, None), super::upstream::usage_counts)
}

/// Serves one accepted connection.
pub async fn serve_connection(shared: Arc<Shared>, stream: tokio::net::TcpStream) {
    let _ = stream.set_nodelay(true);
    let opts = shared.options.clone();
    let svc = hyper::service::service_fn(move |req| handle(shared.clone(), req));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        // No half-close: hyper then notices a client that went away while its request is in
        // flight and drops the request, which cancels the upstream call.
        .half_close(false)
        .max_buf_size(opts.max_header_bytes.max(8192))
        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
    if let Err(e) = conn.await {
        tracing::debug!("inference connection closed: {e}");
    }
}
