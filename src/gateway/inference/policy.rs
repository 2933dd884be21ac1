//! The compiled policy: the blueprint's inference section plus resolved keys, turned into the
//! form the request path uses (parsed backend URLs, route indexes, limits with defaults,
//! compiled guards). Swapped whole on reload.

use std::path::Path;

use hyper::Uri;

pub use super::backend::{BackendSpec, Target};
use super::error::{InferenceError, UrlError};
use super::guard::{Guards, SecretGuard};
use super::limits::RateSettings;
use super::mock::MockBackend;
use super::route::{AllowList, Matcher, RouteRule};
use super::validate::RequestLimits;
use crate::blueprint::{defaults, BackendKind, Inference};
use crate::gateway::credentials::Credentials;

pub struct Policy {
    pub backends: Vec<BackendSpec>,
    pub rules: Vec<RouteRule>,
    pub allowed: AllowList,
    pub limits: RequestLimits,
    pub rates: RateSettings,
    pub guards: Guards,
    /// The built-in guard, when `secretGuard` is on.
    pub secret_guard: Option<SecretGuard>,
    /// Always on: scrubs held keys from upstream responses and logged bodies.
    pub scrubber: SecretGuard,
    pub log_bodies: bool,
}

/// The default Anthropic API base when a backend of that kind names no URL.
pub const ANTHROPIC_URL: &str = "https://api.anthropic.com/v1";

impl Policy {
    /// Compiles `inf`; `base_dir` resolves guard scripts and mock replies files.
    pub fn compile(
        inf: &Inference,
        creds: &Credentials,
        base_dir: &Path,
    ) -> Result<Policy, InferenceError> {
        if inf.backends.is_empty() {
            return Err(InferenceError::NoBackends);
        }
        let mut backends = Vec::new();
        for b in &inf.backends {
            if backends.iter().any(|x: &BackendSpec| x.name == b.name) {
                return Err(InferenceError::Backend {
                    backend: b.name.clone(),
                    reason: "the name is used twice".into(),
                });
            }
            let target = match b.kind {
                BackendKind::Mock => {
                    Target::Mock(MockBackend::load(&b.name, b.mock.as_ref(), base_dir)?)
                }
                BackendKind::Openai | BackendKind::Anthropic => {
                    let url = match (&b.url, b.kind) {
                        (Some(u), _) => u.clone(),
                        (None, BackendKind::Anthropic) => ANTHROPIC_URL.to_string(),
                        (None, _) => {
                            return Err(InferenceError::Backend {
                                backend: b.name.clone(),
                                reason: "`url` is required for kind openai (the API base, e.g. https://integrate.api.nvidia.com/v1)".into(),
                            })
                        }
                    };
                    parse_base(&url).map_err(|source| InferenceError::BackendUrl {
                        backend: b.name.clone(),
                        source,
                    })?
                }
            };
            let key = match &b.api_key {
                None => None,
                Some(r) => Some(
                    creds
                        .get(r)
                        .cloned()
                        .ok_or_else(|| InferenceError::Backend {
                            backend: b.name.clone(),
                            reason: format!("its key ({}) was not resolved", r.describe()),
                        })?,
                ),
            };
            let timeout = b
                .timeout
                .map(|d| d.as_duration())
                .unwrap_or(defaults::BACKEND_TIMEOUT);
            backends.push(BackendSpec {
                name: b.name.clone(),
                kind: b.kind,
                target,
                timeout,
                key,
            });
        }
        let mut rules = Vec::new();
        for (index, r) in inf.routes.iter().enumerate() {
            if r.backends.is_empty() {
                return Err(InferenceError::Route {
                    index,
                    reason: "`backends` is empty".into(),
                });
            }
            let mut idx = Vec::new();
            for name in &r.backends {
                let i = backends
                    .iter()
                    .position(|b| &b.name == name)
                    .ok_or_else(|| InferenceError::Route {
                        index,
                        reason: format!("backend `{name}` is not in inference.backends"),
                    })?;
                idx.push(i);
            }
            rules.push(RouteRule {
                matcher: Matcher::parse(&r.pattern),
                backends: idx,
                strip_prefix: r.strip_prefix,
                model: r.model.clone(),
            });
        }
        let l = &inf.limits;
        let rates = RateSettings {
            rpm: l.requests_per_minute,
            tpm: l.tokens_per_minute,
            tpd: l.tokens_per_day,
        };
        let limits = RequestLimits {
            max_tokens: l.max_tokens,
            temperature: l.temperature.map(|t| (t.min, t.max)),
            max_request_size: l
                .max_request_size
                .map(|b| b.bytes())
                .unwrap_or(defaults::MAX_REQUEST_SIZE),
            max_choices: l.max_choices.unwrap_or(defaults::MAX_CHOICES),
            max_tools: l.max_tools.unwrap_or(defaults::MAX_TOOLS),
            want_stream_usage: rates.tpm.is_some() || rates.tpd.is_some(),
        };
        Ok(Policy {
            backends,
            rules,
            allowed: AllowList::new(&inf.allowed_models),
            limits,
            rates,
            guards: Guards::load(&inf.guards, base_dir)?,
            secret_guard: inf.secret_guard.then(|| SecretGuard::new(creds.all())),
            scrubber: SecretGuard::new(creds.all()),
            log_bodies: inf.log_bodies,
        })
    }
}

/// `http(s)://authority/base` -> the target; the base path loses its trailing `/`.
fn parse_base(url: &str) -> Result<Target, UrlError> {
    let uri: Uri = url.parse().map_err(|source| UrlError::Invalid {
        url: url.to_string(),
        source,
    })?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(UrlError::Scheme(url.to_string())),
    }
    let authority = uri
        .authority()
        .ok_or_else(|| UrlError::NoHost(url.to_string()))?
        .to_string();
    if uri.query().is_some() {
        return Err(UrlError::Query(url.to_string()));
    }
    let path = uri.path().trim_end_matches('/');
    Ok(Target::Http {
        base: format!("{}://{authority}{path}", uri.scheme_str().unwrap_or("http")),
        authority,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let Target::Http { base, authority } = parse_base("http://127.0.0.1:8000/v1/").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (base.as_str(), authority.as_str()),
            ("http://127.0.0.1:8000/v1", "127.0.0.1:8000")
        );
        assert!(parse_base("ftp://x/v1")
            .unwrap_err()
            .to_string()
            .contains("http://"));
        assert!(matches!(
            parse_base("not a url"),
            Err(UrlError::Invalid { source: _, .. })
        ));
        let e = InferenceError::BackendUrl {
            backend: "b".into(),
            source: parse_base("http://h/v1?x=1").unwrap_err(),
        };
        assert_eq!(
            crate::error_chain(&e),
            "inference.backends: backend `b`: `url` \"http://h/v1?x=1\" must not have a query"
        );
    }
}
