//! Pure routing decisions: which models are allowed, which backends serve a model (in fallback
//! order) and what model name goes upstream.

use std::collections::HashSet;

/// `allowedModels`: exact names, and prefixes from entries ending in `*`.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    exact: HashSet<String>,
    /// In blueprint order, without the `*`.
    prefixes: Vec<String>,
    /// In blueprint order, for `GET /v1/models`.
    listed: Vec<String>,
}

impl AllowList {
    pub fn new(entries: &[String]) -> AllowList {
        let mut a = AllowList::default();
        for e in entries {
            match e.strip_suffix('*') {
                Some(p) => a.prefixes.push(p.to_string()),
                None => {
                    a.exact.insert(e.clone());
                }
            }
            a.listed.push(e.clone());
        }
        a
    }
    pub fn allows(&self, model: &str) -> bool {
        self.exact.contains(model) || self.prefixes.iter().any(|p| model.starts_with(p.as_str()))
    }
    /// The entries, as written (a prefix entry keeps its `*`).
    pub fn entries(&self) -> &[String] {
        &self.listed
    }
}

/// How a route matches a model name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    Exact(String),
    /// From a pattern ending in `/` (`nim/`) or `*` (`gpt-*`, `nim/*`); stored without the `*`.
    Prefix(String),
}

impl Matcher {
    pub fn parse(pattern: &str) -> Matcher {
        if let Some(p) = pattern.strip_suffix('*') {
            Matcher::Prefix(p.to_string())
        } else if pattern.ends_with('/') {
            Matcher::Prefix(pattern.to_string())
        } else {
            Matcher::Exact(pattern.to_string())
        }
    }
}

/// A compiled route: backends are indexes into the policy's backend list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    pub matcher: Matcher,
    pub backends: Vec<usize>,
    pub strip_prefix: bool,
    pub model: Option<String>,
}

/// Where one request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePlan {
    /// Backend indexes, tried in order.
    pub chain: Vec<usize>,
    /// The model name sent upstream.
    pub upstream_model: String,
}

/// The first rule (in blueprint order) that matches `model` decides. A prefix rule strips its
/// prefix when `stripPrefix` is on and the prefix ends in `/` (`nim/llama` -> `llama`; `gpt-*`
/// never strips, it only selects). `model` in the rule replaces the name outright. A model no
/// rule matches goes to the first backend unchanged.
pub fn plan(rules: &[RouteRule], model: &str) -> RoutePlan {
    for r in rules {
        let (hit, rest) = match &r.matcher {
            Matcher::Exact(m) => (m == model, None),
            Matcher::Prefix(p) => (
                model.starts_with(p.as_str()),
                Some(&model[p.len().min(model.len())..]),
            ),
        };
        if !hit {
            continue;
        }
        let upstream_model = match (&r.model, rest, &r.matcher) {
            (Some(m), _, _) => m.clone(),
            (None, Some(rest), Matcher::Prefix(p))
                if r.strip_prefix && p.ends_with('/') && !rest.is_empty() =>
            {
                rest.to_string()
            }
            _ => model.to_string(),
        };
        return RoutePlan {
            chain: r.backends.clone(),
            upstream_model,
        };
    }
    RoutePlan {
        chain: vec![0],
        upstream_model: model.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(p: &str, b: Vec<usize>, strip: bool, model: Option<&str>) -> RouteRule {
        RouteRule {
            matcher: Matcher::parse(p),
            backends: b,
            strip_prefix: strip,
            model: model.map(str::to_string),
        }
    }

    #[test]
    fn allow_list_exact_and_prefix() {
        let a = AllowList::new(&["mock-1".into(), "nim/*".into()]);
        assert!(a.allows("mock-1"));
        assert!(a.allows("nim/meta/llama-3.1-8b-instruct"));
        assert!(!a.allows("mock-2"));
        assert!(!a.allows("gpt-4o"));
        assert_eq!(a.entries(), ["mock-1", "nim/*"]);
    }

    #[test]
    fn prefix_stripped_exact_rewritten_first_wins() {
        let rules = vec![
            rule("nim/", vec![1, 2], true, None),
            rule("fast", vec![2], true, Some("meta/llama-3.1-8b-instruct")),
            rule("gpt-*", vec![3], true, None),
            rule("keep/*", vec![1], false, None),
        ];
        assert_eq!(
            plan(&rules, "nim/meta/llama"),
            RoutePlan {
                chain: vec![1, 2],
                upstream_model: "meta/llama".into()
            }
        );
        assert_eq!(
            plan(&rules, "fast").upstream_model,
            "meta/llama-3.1-8b-instruct"
        );
        assert_eq!(
            plan(&rules, "gpt-4o"),
            RoutePlan {
                chain: vec![3],
                upstream_model: "gpt-4o".into()
            }
        );
        assert_eq!(plan(&rules, "keep/x").upstream_model, "keep/x");
        assert_eq!(
            plan(&rules, "other"),
            RoutePlan {
                chain: vec![0],
                upstream_model: "other".into()
            }
        );
        // A bare prefix with nothing after it is not stripped to an empty name.
        assert_eq!(plan(&rules, "nim/").upstream_model, "nim/");
    }
}
