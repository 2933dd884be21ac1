//! Pure request validation against the blueprint, before anything leaves the host.
//!
//! Rejections name the blueprint field an operator would change. A request without
//! `max_tokens` (or `max_completion_tokens`) gets `limits.maxTokens` set, so the limit holds
//! for every request that reaches a backend.

use serde_json::{Map, Value};

use super::error::ApiError;
use super::route::AllowList;

/// The API a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Chat,
    Completions,
    Embeddings,
    /// Anthropic Messages, passed through to a backend of kind `anthropic`.
    Messages,
}

impl Endpoint {
    /// From a request path (`/v1/chat/completions`).
    pub fn from_path(path: &str) -> Option<Endpoint> {
        match path {
            "/v1/chat/completions" => Some(Endpoint::Chat),
            "/v1/completions" => Some(Endpoint::Completions),
            "/v1/embeddings" => Some(Endpoint::Embeddings),
            "/v1/messages" => Some(Endpoint::Messages),
            _ => None,
        }
    }
    /// The path appended to a backend's base URL (which includes `/v1`).
    pub fn upstream_suffix(self) -> &'static str {
        match self {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Messages => "/messages",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat.completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Messages => "messages",
        }
    }
}

/// The blueprint's limits with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestLimits {
    pub max_tokens: Option<u32>,
    pub temperature: Option<(f64, f64)>,
    pub max_request_size: u64,
    pub max_choices: u32,
    pub max_tools: u32,
    /// Token limits are on: streamed chat requests ask for a final usage chunk.
    pub want_stream_usage: bool,
}

/// A request that passed validation, with its (possibly amended) body.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    pub body: Map<String, Value>,
    pub model: String,
    pub stream: bool,
}

/// Checks `body` for `endpoint` against the blueprint's limits and allowed models.
pub fn validate(
    endpoint: Endpoint,
    body: &[u8],
    limits: &RequestLimits,
    allowed: &AllowList,
) -> Result<Validated, ApiError> {
    if body.len() as u64 > limits.max_request_size {
        return Err(too_large(body.len() as u64, limits.max_request_size));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(
            "invalid_json",
            None,
            format!("the request body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(mut body) = value else {
        return Err(ApiError::invalid(
            "invalid_body",
            None,
            "the request body must be a JSON object",
        ));
    };

    let model = match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(_) => {
            return Err(ApiError::invalid(
                "invalid_type",
                Some("model"),
                "`model` must be a non-empty string",
            ))
        }
        None => {
            return Err(ApiError::invalid(
                "missing_required_parameter",
                Some("model"),
                "`model` is required",
            ))
        }
    };
    if !allowed.allows(&model) {
        let list = allowed.entries().join(", ");
        return Err(ApiError::forbidden(
            "model_not_allowed",
            Some("model"),
            format!("model `{model}` is not allowed in this sandbox (allowed: {list}); to use it, add it to inference.allowedModels in the blueprint"),
        ));
    }

    let required = match endpoint {
        Endpoint::Chat | Endpoint::Messages => "messages",
        Endpoint::Completions => "prompt",
        Endpoint::Embeddings => "input",
    };
    match (required, body.get(required)) {
        (_, None) => {
            return Err(ApiError::invalid(
                "missing_required_parameter",
                Some(required),
                format!("`{required}` is required"),
            ))
        }
        ("messages", Some(Value::Array(a))) if !a.is_empty() => {}
        ("messages", Some(_)) => {
            return Err(ApiError::invalid(
                "invalid_type",
                Some("messages"),
                "`messages` must be a non-empty array",
            ))
        }
        _ => {}
    }

    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::invalid(
                "invalid_type",
                Some("stream"),
                "`stream` must be a boolean",
            ))
        }
    };

    if endpoint != Endpoint::Embeddings {
        check_max_tokens(&mut body, limits)?;
        check_temperature(&body, limits)?;
        check_count(
            &body,
            "n",
            limits.max_choices,
            "inference.limits.maxChoices",
        )?;
        check_tools(&body, limits.max_tools)?;
    }

    if stream
        && endpoint == Endpoint::Chat
        && limits.want_stream_usage
        && !body.contains_key("stream_options")
    {
        body.insert(
            "stream_options".into(),
            serde_json::json!({"include_usage": true}),
        );
    }
    Ok(Validated {
        body,
        model,
        stream,
    })
}

pub fn too_large(size: u64, limit: u64) -> ApiError {
    ApiError {
        status: 413,
        ..ApiError::invalid(
            "request_too_large",
            None,
            format!("the request body ({size} bytes) exceeds the limit of {limit} bytes; raise inference.limits.maxRequestSize in the blueprint"),
        )
    }
}

/// `v` as a positive integer, or the 400 that names `field`.
fn positive_integer(v: &Value, field: &str) -> Result<u64, ApiError> {
    v.as_u64().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::invalid(
            "invalid_value",
            Some(field),
            format!("`{field}` must be a positive integer"),
        )
    })
}

fn check_max_tokens(body: &mut Map<String, Value>, limits: &RequestLimits) -> Result<(), ApiError> {
    let mut present = false;
    for field in ["max_tokens", "max_completion_tokens"] {
        let Some(v) = body.get(field) else { continue };
        if v.is_null() {
            continue;
        }
        present = true;
        let n = positive_integer(v, field)?;
        if let Some(max) = limits.max_tokens {
            if n > u64::from(max) {
                return Err(ApiError::invalid(
                    "max_tokens_exceeded",
                    Some(field),
                    format!("`{field}` is {n}, above this sandbox's limit of {max}; lower it, or raise inference.limits.maxTokens in the blueprint"),
                ));
            }
        }
    }
    if !present {
        if let Some(max) = limits.max_tokens {
            body.insert("max_tokens".into(), Value::from(max));
        }
    }
    Ok(())
}

fn check_temperature(body: &Map<String, Value>, limits: &RequestLimits) -> Result<(), ApiError> {
    let Some(v) = body.get("temperature").filter(|v| !v.is_null()) else {
        return Ok(());
    };
    let t = v.as_f64().ok_or_else(|| {
        ApiError::invalid(
            "invalid_type",
            Some("temperature"),
            "`temperature` must be a number",
        )
    })?;
    if let Some((min, max)) = limits.temperature {
        if t < min || t > max {
            return Err(ApiError::invalid(
                "temperature_out_of_range",
                Some("temperature"),
                format!("`temperature` is {t}, outside this sandbox's range [{min}, {max}]; change it, or inference.limits.temperature in the blueprint"),
            ));
        }
    }
    Ok(())
}

fn check_count(
    body: &Map<String, Value>,
    field: &str,
    max: u32,
    blueprint_field: &str,
) -> Result<(), ApiError> {
    let Some(v) = body.get(field).filter(|v| !v.is_null()) else {
        return Ok(());
    };
    let n = positive_integer(v, field)?;
    if n > u64::from(max) {
        return Err(ApiError::invalid(
            "too_many_choices",
            Some(field),
            format!("`{field}` is {n}, above this sandbox's limit of {max}; lower it, or raise {blueprint_field} in the blueprint"),
        ));
    }
    Ok(())
}

fn check_tools(body: &Map<String, Value>, max: u32) -> Result<(), ApiError> {
    for field in ["tools", "functions"] {
        let Some(v) = body.get(field).filter(|v| !v.is_null()) else {
            continue;
        };
        let n = v
            .as_array()
            .ok_or_else(|| {
                ApiError::invalid(
                    "invalid_type",
                    Some(field),
                    format!("`{field}` must be an array"),
                )
            })?
            .len();
        if n as u64 > u64::from(max) {
            return Err(ApiError::invalid(
                "too_many_tools",
                Some(field),
                format!("{n} {field} in one request, above this sandbox's limit of {max}; send fewer, or raise inference.limits.maxTools in the blueprint"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> RequestLimits {
        RequestLimits {
            max_tokens: Some(512),
            temperature: Some((0.0, 1.0)),
            max_request_size: 4 << 20,
            max_choices: 1,
            max_tools: 2,
            want_stream_usage: false,
        }
    }
    fn allowed() -> AllowList {
        AllowList::new(&["mock-1".into(), "nim/*".into()])
    }
    fn run(body: &str) -> Result<Validated, ApiError> {
        validate(Endpoint::Chat, body.as_bytes(), &limits(), &allowed())
    }
    const MSG: &str = r#""messages":[{"role":"user","content":"hi"}]"#;

    #[test]
    fn max_tokens_is_set_when_absent_and_checked_when_present() {
        let v = run(&format!(r#"{{"model":"mock-1",{MSG}}}"#)).unwrap();
        assert_eq!(v.body["max_tokens"], 512);
        assert!(!v.stream);
        let v = run(&format!(
            r#"{{"model":"nim/x",{MSG},"max_completion_tokens":100}}"#
        ))
        .unwrap();
        assert_eq!(v.body["max_completion_tokens"], 100);
        assert!(!v.body.contains_key("max_tokens"));
        let e = run(&format!(r#"{{"model":"mock-1",{MSG},"max_tokens":513}}"#)).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("max_tokens")));
        assert!(
            e.message.contains("inference.limits.maxTokens"),
            "{}",
            e.message
        );
        let e = run(&format!(
            r#"{{"model":"mock-1",{MSG},"max_completion_tokens":9999}}"#
        ))
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("max_completion_tokens"));
        assert_eq!(
            run(&format!(r#"{{"model":"mock-1",{MSG},"max_tokens":-1}}"#))
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn model_not_allowed_is_403_naming_the_field() {
        let e = run(&format!(r#"{{"model":"gpt-4o",{MSG}}}"#)).unwrap_err();
        assert_eq!(e.status, 403);
        assert_eq!(e.kind, "permission_error");
        assert!(
            e.message.contains("inference.allowedModels"),
            "{}",
            e.message
        );
        assert_eq!(
            run(&format!(r#"{{{MSG}}}"#)).unwrap_err().param.as_deref(),
            Some("model")
        );
    }

    #[test]
    fn shape_errors() {
        assert_eq!(run("{not json").unwrap_err().code, "invalid_json");
        assert_eq!(run("[1,2]").unwrap_err().code, "invalid_body");
        assert_eq!(
            run(r#"{"model":"mock-1","messages":[]}"#)
                .unwrap_err()
                .param
                .as_deref(),
            Some("messages")
        );
        assert_eq!(
            run(r#"{"model":"mock-1"}"#).unwrap_err().param.as_deref(),
            Some("messages")
        );
        assert_eq!(
            run(&format!(r#"{{"model":"mock-1",{MSG},"stream":"yes"}}"#))
                .unwrap_err()
                .param
                .as_deref(),
            Some("stream")
        );
        let e = validate(
            Endpoint::Embeddings,
            br#"{"model":"mock-1"}"#,
            &limits(),
            &allowed(),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input"));
    }

    #[test]
    fn temperature_choices_tools() {
        let e = run(&format!(r#"{{"model":"mock-1",{MSG},"temperature":1.5}}"#)).unwrap_err();
        assert!(e.message.contains("inference.limits.temperature"));
        assert!(run(&format!(r#"{{"model":"mock-1",{MSG},"temperature":0.7}}"#)).is_ok());
        let e = run(&format!(r#"{{"model":"mock-1",{MSG},"n":2}}"#)).unwrap_err();
        assert!(e.message.contains("inference.limits.maxChoices"));
        let e = run(&format!(
            r#"{{"model":"mock-1",{MSG},"tools":[{{}},{{}},{{}}]}}"#
        ))
        .unwrap_err();
        assert!(e.message.contains("inference.limits.maxTools"));
        assert!(run(&format!(
            r#"{{"model":"mock-1",{MSG},"tools":[{{}},{{}}]}}"#
        ))
        .is_ok());
    }

    #[test]
    fn size_limit_and_stream_usage() {
        let mut l = limits();
        l.max_request_size = 10;
        let e = validate(Endpoint::Chat, &[b' '; 11], &l, &allowed()).unwrap_err();
        assert_eq!(e.status, 413);
        assert!(e.message.contains("inference.limits.maxRequestSize"));
        let mut l = limits();
        l.want_stream_usage = true;
        let v = validate(
            Endpoint::Chat,
            format!(r#"{{"model":"mock-1",{MSG},"stream":true}}"#).as_bytes(),
            &l,
            &allowed(),
        )
        .unwrap();
        assert!(v.stream);
        assert_eq!(v.body["stream_options"]["include_usage"], true);
    }
}
