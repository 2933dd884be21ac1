//! Errors: [`InferenceError`] for building the router (configuration, guards, I/O), and
//! [`ApiError`], a rejection answered to the agent in the OpenAI error shape
//! `{"error":{"message","type","param","code"}}`.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error("inference.backends: backend `{backend}`: {reason}")]
    Backend { backend: String, reason: String },
    #[error("inference.routes[{index}]: {reason}")]
    Route { index: usize, reason: String },
    #[error("inference.guards: {}: {reason}", path.display())]
    Guard { path: PathBuf, reason: String },
    #[error("inference.backends: backend `{backend}`: mock replies file {}: {reason}", path.display())]
    MockReplies {
        backend: String,
        path: PathBuf,
        reason: String,
    },
    #[error("inference: {0}")]
    Config(String),
    #[error(transparent)]
    Credentials(#[from] crate::gateway::credentials::CredentialError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
