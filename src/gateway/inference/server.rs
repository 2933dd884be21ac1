//! The HTTP side: one hyper connection per agent connection, and the request path
//! (admission, body, validation, guards, routing with fallback, response, log line).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response};
use serde_json::{Map, Value};

use super::error::ApiError;
use super::log::{ms, Pending};
use super::policy::Target;
use super::upstream::{self, Failure, Observed};
use super::validate::{self, Endpoint};
use super::{BoxBody, Shared, State};

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
        .expect("a valid response")
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
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        let shown = if ct.is_empty() {
            "none".to_string()
        } else {
            format!("`{}`", ct.chars().take(100).collect::<String>())
        };
        return Err(ApiError {
            status: 415,
            ..ApiError::invalid(
                "unsupported_media_type",
                None,
                format!("Content-Type must be application/json (got {shown})"),
            )
        });
    }
    let max = policy.limits.max_request_size;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > max) {
        return Err(validate::too_large(n, max));
    }
    state.limiter.admit()?;

    let (parts, body) = req.into_parts();
    let body = match tokio::time::timeout(
        shared.options.body_read_timeout,
        Limited::new(body, max as usize).collect(),
    )
    .await
    {
        Err(_) => {
            return Err(ApiError {
                status: 408,
                ..ApiError::invalid(
                    "request_timeout",
                    None,
                    format!(
                        "the request body did not arrive within {:?}",
                        shared.options.body_read_timeout
                    ),
                )
            })
        }
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return Err(validate::too_large(max + 1, max))
        }
        Ok(Err(e)) => {
            return Err(ApiError::invalid(
                "truncated_body",
                None,
                format!("the request body could not be read completely: {e}"),
            ))
        }
        Ok(Ok(c)) => c.to_bytes(),
    };
    let v = validate::validate(ep, &body, &policy.limits, &policy.allowed)?;
    p.rec.model = Some(v.model.clone());
    p.rec.stream = v.stream;
    if v.stream && policy.guards.has_response_guards() {
        // A response guard judges whole answers; a stream would pass it by. Fail closed.
        return Err(ApiError::invalid(
            "stream_with_response_guards",
            Some("stream"),
            "this sandbox's blueprint checks every model answer (inference.guards with onResponse), which needs whole answers: send the request with \"stream\": false",
        ));
    }
    let mut req_body = v.body;

    match policy.guards.on_request(ep.name(), &v.model, &mut req_body) {
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
    if let Some(sg) = &policy.secret_guard {
        match sg.check(&mut req_body) {
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
    }

    let plan = super::route::plan(&policy.rules, &v.model);
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
            format!("no backend for model `{}` serves {}: add a backend of kind {} and route the model to it in inference.routes", v.model, ep.name(), if ep == Endpoint::Messages { "anthropic" } else { "openai" }),
        ));
    }
    if plan.upstream_model != v.model {
        req_body.insert("model".into(), Value::String(plan.upstream_model.clone()));
        p.rec.upstream_model = Some(plan.upstream_model.clone());
    }
    let bytes = Bytes::from(serde_json::to_vec(&req_body).expect("a JSON map serialises"));
    if policy.log_bodies {
        p.rec.request_body = Some(
            policy
                .scrubber
                .redact_for_log(&String::from_utf8_lossy(&bytes)),
        );
    }

    let mut timed_out = true;
    for &i in &chain {
        let b = &policy.backends[i];
        p.rec.backend = Some(b.name.clone());
        if let Target::Mock(m) = &b.target {
            p.reached_backend = true;
            let r = m.respond(ep, &req_body).await;
            p.rec.status = r.status;
            let resp = Response::builder()
                .status(r.status)
                .header(header::CONTENT_TYPE, r.content_type);
            if r.content_type == "text/event-stream" {
                let scrub = policy.scrubber.stream_scrub();
                return Ok(stream(resp, r.body, scrub, p, b.timeout));
            }
            let body = r
                .body
                .collect()
                .await
                .map_err(|e| upstream_error(500, e.to_string()))?
                .to_bytes();
            return finish(state, ep, &v.model, resp, body, p);
        }
        let started = std::time::Instant::now();
        match upstream::send(
            &shared.client,
            b,
            ep,
            bytes.clone(),
            &parts.headers,
            &p.rec.id,
        )
        .await
        {
            Err(f) => {
                timed_out &= matches!(f, Failure::Timeout(_));
                let f = scrub(&policy.scrubber, &f.to_string());
                tracing::debug!(backend = %b.name, "inference backend failed: {f}");
                p.rec.fallbacks.push(format!("{}: {f}", b.name));
            }
            Ok(r) => {
                p.reached_backend = true;
                let status = r.status().as_u16();
                p.rec.status = status;
                let ct = r.headers().get(header::CONTENT_TYPE).cloned();
                let is_sse = ct
                    .as_ref()
                    .and_then(|c| c.to_str().ok())
                    .is_some_and(|c| c.starts_with("text/event-stream"));
                let mut resp = Response::builder().status(status);
                if let Some(ct) = ct {
                    resp = resp.header(header::CONTENT_TYPE, ct);
                }
                if is_sse {
                    // Time to first token is taken at the first data chunk, in `Observed`.
                    return Ok(stream(
                        resp.header(header::CACHE_CONTROL, "no-cache"),
                        upstream::boxed(r.into_body()),
                        policy.scrubber.stream_scrub(),
                        p,
                        b.timeout,
                    ));
                }
                let left = b.timeout.saturating_sub(started.elapsed());
                let read = Limited::new(r.into_body(), MAX_RESPONSE).collect();
                let body = match tokio::time::timeout(left, read).await {
                    Err(_) => {
                        return Err(upstream_error(
                            504,
                            format!(
                                "backend `{}` did not finish its answer within {:?}",
                                b.name, b.timeout
                            ),
                        ))
                    }
                    Ok(Err(e)) => {
                        return Err(upstream_error(
                            502,
                            format!(
                                "backend `{}` answer could not be read: {}",
                                b.name,
                                scrub(&policy.scrubber, &e.to_string())
                            ),
                        ))
                    }
                    Ok(Ok(c)) => c.to_bytes(),
                };
                p.mark_first_byte();
                return finish(state, ep, &v.model, resp, body, p);
            }
        }
    }
    let tried = p.rec.fallbacks.join("; ");
    p.rec.backend = None;
    Err(if timed_out {
        upstream_error(504, format!("no backend answered in time: {tried}"))
    } else {
        upstream_error(502, format!("every backend for this model failed: {tried}"))
    })
}

fn scrub(s: &super::guard::SecretGuard, text: &str) -> String {
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
    resp.body(BodyExt::boxed(body)).expect("a valid response")
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
    let ok = p.rec.status < 300;
    let guard_responses = ok && policy.guards.has_response_guards();
    if ok || guard_responses {
        if let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(&body) {
            let (pt, ct) = usage_from(&map);
            p.rec.prompt_tokens = pt;
            p.rec.completion_tokens = ct;
            if guard_responses {
                match policy.guards.on_response(ep.name(), model, &mut map) {
                    Ok(rewrote) if rewrote.is_empty() => {}
                    Ok(rewrote) => {
                        p.rec.guards.extend(
                            rewrote
                                .into_iter()
                                .map(|g| format!("{g}: rewrote the response")),
                        );
                        body =
                            Bytes::from(serde_json::to_vec(&map).expect("a JSON map serialises"));
                    }
                    Err((guard, reason)) => {
                        p.rec.guards.push(format!("{guard}: denied the response"));
                        return Err(ApiError::forbidden(
                            "guard_denied",
                            None,
                            format!("response denied by guard {guard}: {reason}"),
                        ));
                    }
                }
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
    Ok(resp.body(full(body)).expect("a valid response"))
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
