//! Errors: [`InferenceError`] for building the router (configuration, guards, I/O), and
//! [`ApiError`], a rejection answered to the agent in the OpenAI error shape
//! `{"error":{"message","type","param","code"}}`.

use std::path::PathBuf;

/// Why a router cannot be built or reloaded. Variants with a `#[source]` do not repeat it in
/// their message: print the chain (`crate::error_chain`, or the CLI's `{:#}`).
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error("inference.backends: backend `{backend}`: {reason}")]
    Backend { backend: String, reason: String },
    #[error("inference.backends: backend `{backend}`")]
    BackendUrl {
        backend: String,
        #[source]
        source: UrlError,
    },
    #[error("inference.routes[{index}]: {reason}")]
    Route { index: usize, reason: String },
    #[error("inference.guards: {}: cannot read", path.display())]
    GuardRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("inference.guards: {}", path.display())]
    GuardCompile {
        path: PathBuf,
        #[source]
        source: rhai::ParseError,
    },
    #[error("inference.backends: backend `{backend}`: mock replies file {}", path.display())]
    MockReplies {
        backend: String,
        path: PathBuf,
        #[source]
        source: RepliesError,
    },
    #[error("inference: no backends: add at least one to inference.backends")]
    NoBackends,
    #[error("inference")]
    Tls(#[source] crate::tls::TlsError),
    #[error("inference")]
    Dir(#[source] crate::home::HomeError),
    #[error("inference: cannot save the daily token budget")]
    BudgetSave(#[source] crate::home::HomeError),
    #[error("inference: {}: not a token budget file (delete it to start the day at zero)", path.display())]
    BudgetFile {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Credentials(#[from] crate::gateway::credentials::CredentialError),
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why a backend's `url` is refused.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("`url` {url:?} is not a URL")]
    Invalid {
        url: String,
        #[source]
        source: hyper::http::uri::InvalidUri,
    },
    #[error("`url` {0:?} must start with http:// or https://")]
    Scheme(String),
    #[error("`url` {0:?} has no host")]
    NoHost(String),
    #[error("`url` {0:?} must not have a query")]
    Query(String),
}

/// Why a mock replies file cannot be used (the message is the source's own).
#[derive(Debug, thiserror::Error)]
pub enum RepliesError {
    #[error(transparent)]
    Read(std::io::Error),
    #[error(transparent)]
    Parse(serde_saphyr::Error),
    #[error("replies[{index}]: give exactly one of `reply` (a text) and `echo` (history)")]
    ReplyOrEcho { index: usize },
}

/// A request the gateway answers itself (rejections, limits, upstream failures).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub kind: &'static str,
    pub code: &'static str,
    pub param: Option<String>,
    pub message: String,
    /// Seconds, for 429.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(
        status: u16,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            kind,
            code,
            param: None,
            message: message.into(),
            retry_after: None,
        }
    }
    /// 400: the request is malformed or out of the blueprint's bounds.
    pub fn invalid(
        code: &'static str,
        param: Option<&str>,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError::new(400, "invalid_request_error", code, message).about(param)
    }
    /// 403: the blueprint does not allow it.
    pub fn forbidden(
        code: &'static str,
        param: Option<&str>,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError::new(403, "permission_error", code, message).about(param)
    }
    /// Names the request field the error is about.
    fn about(self, param: Option<&str>) -> ApiError {
        ApiError {
            param: param.map(str::to_string),
            ..self
        }
    }
    pub fn rate_limited(
        code: &'static str,
        retry_after: u64,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            retry_after: Some(retry_after.max(1)),
            ..ApiError::new(429, "rate_limit_error", code, message)
        }
    }
    pub fn not_found(path: &str) -> ApiError {
        ApiError::new(
            404,
            "invalid_request_error",
            "unknown_url",
            format!(
                "unknown path {path}: the gateway serves POST /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/messages and GET /v1/models"
            ),
        )
    }

    /// The OpenAI error body.
    pub fn body(&self) -> String {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_error_shape() {
        let e = ApiError::forbidden("model_not_allowed", Some("model"), "nope");
        let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(v["error"]["type"], "permission_error");
        assert_eq!(v["error"]["param"], "model");
        assert_eq!(v["error"]["code"], "model_not_allowed");
        assert_eq!(v["error"]["message"], "nope");
        assert_eq!(ApiError::rate_limited("x", 0, "y").retry_after, Some(1));
    }
}
