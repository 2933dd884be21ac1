//! Checks of the `inference` section: backends, routes, allowed models, limits.

use std::collections::HashSet;

use super::{check_credential, check_name, Findings};
use crate::blueprint::credential::env_entry_is_secret;
use crate::blueprint::diag::did_you_mean;
use crate::blueprint::types::*;

fn route_matches(pattern: &str, model: &str) -> bool {
    let (m_prefix, m_is_prefix) = match model.strip_suffix('*') {
        Some(p) => (p, true),
        None => (model, false),
    };
    let p_prefix = pattern.strip_suffix('*').unwrap_or(pattern);
    let pattern_is_prefix = pattern.ends_with('*') || pattern.ends_with('/');
    if pattern_is_prefix {
        m_prefix.starts_with(p_prefix)
    } else {
        !m_is_prefix && m_prefix == pattern
    }
}

pub(super) fn check_inference(inf: &Inference, f: &mut Findings) {
    if inf.backends.is_empty() {
        f.err(
            "inference.no-backend",
            "inference.backends",
            "no backends: the agent could not reach any model",
        )
        .hint("add a backend (kind: openai, anthropic or mock), or remove the inference section");
    }
    let mut names = HashSet::new();
    for (i, b) in inf.backends.iter().enumerate() {
        let path = format!("inference.backends[{i}]");
        if let Err(m) = check_name(&b.name) {
            f.err("inference.backend-name", format!("{path}.name"), m);
        }
        if !names.insert(b.name.as_str()) {
            f.err(
                "inference.backend-duplicate",
                format!("{path}.name"),
                format!("backend `{}` is defined twice", b.name),
            );
        }
        match (&b.kind, &b.url) {
            (BackendKind::Mock, Some(_)) => {
                f.err(
                    "inference.backend-url",
                    format!("{path}.url"),
                    "the mock backend has no URL",
                )
                .warn()
                .hint("remove `url`, or use kind: openai for a real server");
            }
            (BackendKind::Openai | BackendKind::Anthropic, None) => {
                f.err(
                    "inference.backend-url",
                    path.clone(),
                    format!("backend `{}` needs a `url`", b.name),
                )
                .hint("e.g. url: https://integrate.api.nvidia.com/v1");
            }
            (_, Some(u)) => check_url(u, &format!("{path}.url"), f),
            _ => {}
        }
        if b.mock.is_some() && b.kind != BackendKind::Mock {
            f.err(
                "inference.mock-settings",
                format!("{path}.mock"),
                "`mock` settings only apply to kind: mock",
            )
            .key();
        }
        if let Some(k) = &b.api_key {
            check_credential(k, &format!("{path}.apiKey"), f);
        }
        if b.timeout.is_some_and(|t| t.as_duration().is_zero()) {
            f.err(
                "inference.timeout",
                format!("{path}.timeout"),
                "timeout must be more than zero",
            );
        }
    }
    for (i, r) in inf.routes.iter().enumerate() {
        let path = format!("inference.routes[{i}]");
        if r.pattern.trim().is_empty() || (r.pattern == "*" && i + 1 < inf.routes.len()) {
            f.err(
                "inference.route",
                format!("{path}.match"),
                "a route needs a model name or prefix (a catch-all `*` must come last)",
            );
        }
        if r.backends.is_empty() {
            f.err(
                "inference.route",
                format!("{path}.backends"),
                "a route needs at least one backend",
            );
        }
        for (j, b) in r.backends.iter().enumerate() {
            if !names.contains(b.as_str()) {
                let e = f.err(
                    "inference.unknown-backend",
                    format!("{path}.backends[{j}]"),
                    format!("route names backend `{b}`, which is not defined"),
                );
                match did_you_mean(b, inf.backends.iter().map(|b| b.name.as_str())) {
                    Some(s) => e.hint(format!("did you mean `{s}`?")),
                    None => e.hint("define it under inference.backends"),
                };
            }
        }
    }
    if inf.allowed_models.is_empty() {
        f.err(
            "inference.no-models",
            "inference.allowedModels",
            "allowedModels is empty: every request would be refused",
        )
        .hint("list the models the agent may call, e.g. [mock-1] or [nim/*]");
    }
    for (i, m) in inf.allowed_models.iter().enumerate() {
        let path = format!("inference.allowedModels[{i}]");
        if m.trim().is_empty() || m == "*" {
            f.err(
                "inference.model",
                &path,
                "name a model or a prefix such as `nim/*`; `*` alone would allow any model",
            );
            continue;
        }
        if m[..m.len() - 1].contains('*') {
            f.err(
                "inference.model",
                &path,
                format!("`{m}`: `*` is only allowed at the end, as a prefix"),
            );
            continue;
        }
        let routed = inf.routes.iter().any(|r| route_matches(&r.pattern, m))
            || (inf.routes.is_empty() && inf.backends.len() == 1);
        if !routed {
            let hint = if inf.routes.is_empty() {
                format!(
                    "with {} backends, add a route: routes: [{{match: \"{m}\", backends: [NAME]}}]",
                    inf.backends.len()
                )
            } else {
                "add a route whose `match` covers it".to_string()
            };
            f.err(
                "inference.model-unrouted",
                &path,
                format!("model `{m}` matches no route, so no backend would serve it"),
            )
            .hint(hint);
        }
    }
    let l = &inf.limits;
    for (v, field) in [
        (l.max_tokens.map(u64::from), "maxTokens"),
        (l.requests_per_minute.map(u64::from), "requestsPerMinute"),
        (l.tokens_per_minute, "tokensPerMinute"),
        (l.tokens_per_day, "tokensPerDay"),
        (l.max_choices.map(u64::from), "maxChoices"),
    ] {
        if v == Some(0) {
            f.err(
                "inference.limit",
                format!("inference.limits.{field}"),
                format!("{field}: 0 would refuse every request"),
            )
            .hint("remove the field for no limit, or give a positive number");
        }
    }
    if let Some(t) = &l.temperature {
        if !(t.min.is_finite() && t.max.is_finite()) || t.min < 0.0 || t.max > 2.0 || t.min > t.max
        {
            f.err(
                "inference.temperature-range",
                "inference.limits.temperature",
                format!(
                    "temperature range {}..{} is not an ordered range within 0..2",
                    t.min, t.max
                ),
            )
            .hint("write min <= max, both between 0 and 2, e.g. {min: 0, max: 1}");
        }
    }
}

fn check_url(u: &str, path: &str, f: &mut Findings) {
    let Some((scheme, rest)) = u.split_once("://") else {
        f.err("inference.backend-url", path, format!("`{u}` is not a URL"))
            .hint("write e.g. https://integrate.api.nvidia.com/v1");
        return;
    };
    if scheme != "http" && scheme != "https" {
        f.err(
            "inference.backend-url",
            path,
            format!("URL scheme `{scheme}` is not http or https"),
        );
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        f.err(
            "secret.inline",
            path,
            "the URL carries credentials (user:password@)",
        )
        .secret()
        .hint("remove them and set the backend's apiKey: {env: VARIABLE}");
    } else if authority.is_empty() {
        f.err("inference.backend-url", path, format!("`{u}` has no host"));
    }
    if let Some((_, q)) = rest.split_once('?') {
        if q.split('&').any(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            env_entry_is_secret(k, v) || k.eq_ignore_ascii_case("key")
        }) {
            f.err(
                "secret.inline",
                path,
                "the URL carries a key in its query string",
            )
            .secret()
            .hint("set the backend's apiKey: {env: VARIABLE} instead");
        }
    }
}

/// Parses a CIDR (`198.18.0.0/15`, `10.1.2.3`, `fd00::/8`).
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_matching() {
        assert!(route_matches("nim/", "nim/meta/llama-3.1-8b-instruct"));
        assert!(route_matches("nim/", "nim/*"));
        assert!(route_matches("gpt-*", "gpt-4o"));
        assert!(route_matches("mock-1", "mock-1"));
        assert!(!route_matches("mock-1", "mock-2"));
        assert!(!route_matches("mock-1", "mock-*"));
        assert!(!route_matches("nim/", "openai/gpt"));
    }
}
