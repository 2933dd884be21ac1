//! Egress domain rules: parsing `example.com`, `*.example.com`, `example.com:8443` and
//! `{host, ports}` into a matcher, with the checks validation reports.
//!
//! The egress gateway uses the same [`DomainSpec::allows`] to decide, so what `validate`
//! accepts is exactly what the gateway enforces.

use std::fmt;

use super::types::{DomainRule, DOMAIN_PORTS};

/// What is wrong with an allowed-domain rule, a domain name or a port; each message says what
/// a good value looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("`{host}` lists no ports: remove `ports` for the defaults 80 and 443")]
    NoPorts { host: String },
    #[error("`{rule}` is a URL: write the host name only, e.g. `{host}`")]
    Url { rule: String, host: String },
    #[error("`{port}` in `{rule}` is not a port number")]
    NotAPort { port: String, rule: String },
    #[error("port {0} is out of range: ports are 1 to 65535")]
    PortOutOfRange(u32),
    #[error("empty domain")]
    Empty,
    #[error("`*` would allow every domain: list the domains the agent needs, or use a preset")]
    EveryDomain,
    #[error("`{0}` is an IP address: allowedDomains takes names; list addresses in network.egress.allowAddresses")]
    IpAddress(String),
    #[error("`*.{0}` would allow a whole top-level domain: name a registrable domain such as `*.example.com`")]
    TopLevelWildcard(String),
    #[error("`{0}`: a wildcard is only allowed as the whole first label, as in `*.example.com`")]
    MisplacedWildcard(String),
    #[error("domain `{0}` is longer than 253 characters")]
    NameTooLong(String),
    #[error("domain `{0}` has an empty label (two dots in a row?)")]
    EmptyLabel(String),
    #[error("label `{label}` in `{name}` is longer than 63 characters")]
    LabelTooLong { label: String, name: String },
    #[error("domain `{0}` has characters other than letters, digits, `-` and `.`")]
    BadCharacters(String),
    #[error("label `{label}` in `{name}` starts or ends with `-`")]
    HyphenAtEdge { label: String, name: String },
}

/// A host pattern: an exact name or a `*.` wildcard over any depth of subdomains (the apex
/// itself is not matched by the wildcard).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    Exact(String),
    /// The suffix after `*.`, e.g. `example.com` for `*.example.com`.
    Wildcard(String),
}

/// A parsed allowed-domain rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DomainSpec {
    pub pattern: HostPattern,
    pub ports: Vec<u16>,
}

impl HostPattern {
    /// Whether `host` (any case, with or without a trailing dot) matches.
    pub fn matches(&self, host: &str) -> bool {
        let h = host.trim_end_matches('.');
        match self {
            HostPattern::Exact(name) => h.eq_ignore_ascii_case(name),
            HostPattern::Wildcard(suffix) => {
                h.len() > suffix.len() + 1
                    && h.as_bytes()[h.len() - suffix.len() - 1] == b'.'
                    && h[h.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(n) => f.write_str(n),
            HostPattern::Wildcard(s) => write!(f, "*.{s}"),
        }
    }
}

impl fmt::Display for DomainSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.pattern)?;
        if self.ports != DOMAIN_PORTS {
            let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
            write!(f, " (ports {})", ports.join(", "))?;
        }
        Ok(())
    }
}

impl DomainSpec {
    pub fn allows(&self, host: &str, port: u16) -> bool {
        self.ports.contains(&port) && self.pattern.matches(host)
    }
}

/// Parses one allowed-domain rule. Errors say what is wrong and what a good rule looks like.
pub fn parse_rule(rule: &DomainRule) -> Result<DomainSpec, DomainError> {
    let (host, ports) = match rule {
        DomainRule::Name(s) => split_host_port(s)?,
        DomainRule::WithPorts(w) => {
            if w.ports.is_empty() {
                return Err(DomainError::NoPorts {
                    host: w.host.clone(),
                });
            }
            let mut ports = Vec::with_capacity(w.ports.len());
            for &p in &w.ports {
                ports.push(check_port(p)?);
            }
            (w.host.clone(), Some(ports))
        }
    };
    let pattern = parse_host_pattern(&host)?;
    let mut ports = ports.unwrap_or_else(|| DOMAIN_PORTS.to_vec());
    ports.sort_unstable();
    ports.dedup();
    Ok(DomainSpec { pattern, ports })
}

fn split_host_port(s: &str) -> Result<(String, Option<Vec<u16>>), DomainError> {
    let s = s.trim();
    if s.contains("://") {
        return Err(DomainError::Url {
            rule: s.to_string(),
            host: host_of_url(s).to_string(),
        });
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            let p: u32 = port.parse().map_err(|_| DomainError::NotAPort {
                port: port.to_string(),
                rule: s.to_string(),
            })?;
            Ok((host.to_string(), Some(vec![check_port(p)?])))
        }
        _ => Ok((s.to_string(), None)),
    }
}

fn host_of_url(s: &str) -> &str {
    let rest = s.split_once("://").map_or(s, |(_, r)| r);
    rest.split(['/', ':', '?']).next().unwrap_or(rest)
}

/// Checks a port number is in 1..=65535.
pub fn check_port(p: u32) -> Result<u16, DomainError> {
    match u16::try_from(p) {
        Ok(v) if v >= 1 => Ok(v),
        _ => Err(DomainError::PortOutOfRange(p)),
    }
}

/// Parses `example.com` or `*.example.com`.
pub fn parse_host_pattern(host: &str) -> Result<HostPattern, DomainError> {
    let h = host.trim().trim_end_matches('.').to_ascii_lowercase();
    if h.is_empty() {
        return Err(DomainError::Empty);
    }
    if h == "*" || h == "*.*" {
        return Err(DomainError::EveryDomain);
    }
    if h.parse::<std::net::IpAddr>().is_ok()
        || h.trim_matches(['[', ']'])
            .parse::<std::net::Ipv6Addr>()
            .is_ok()
    {
        return Err(DomainError::IpAddress(h));
    }
    if let Some(suffix) = h.strip_prefix("*.") {
        check_domain_name(suffix)?;
        if !suffix.contains('.') {
            return Err(DomainError::TopLevelWildcard(suffix.to_string()));
        }
        return Ok(HostPattern::Wildcard(suffix.to_string()));
    }
    if h.contains('*') {
        return Err(DomainError::MisplacedWildcard(h));
    }
    check_domain_name(&h)?;
    Ok(HostPattern::Exact(h))
}

/// Checks a DNS name: labels of 1-63 letters, digits and hyphens (underscores tolerated for
/// service names), not starting or ending with a hyphen, 253 characters at most.
pub fn check_domain_name(name: &str) -> Result<(), DomainError> {
    if name.len() > 253 {
        return Err(DomainError::NameTooLong(name.to_string()));
    }
    for label in name.split('.') {
        check_label(label, name)?;
    }
    Ok(())
}

/// Checks one label of the DNS name `name`.
fn check_label(label: &str, name: &str) -> Result<(), DomainError> {
    if label.is_empty() {
        return Err(DomainError::EmptyLabel(name.to_string()));
    }
    if label.len() > 63 {
        return Err(DomainError::LabelTooLong {
            label: label.into(),
            name: name.into(),
        });
    }
    if !label
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(DomainError::BadCharacters(name.to_string()));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(DomainError::HyphenAtEdge {
            label: label.into(),
            name: name.into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::types::DomainWithPorts;

    fn rule(s: &str) -> Result<DomainSpec, String> {
        parse_rule(&DomainRule::Name(s.into())).map_err(|e| e.to_string())
    }

    #[test]
    fn exact_and_wildcard() {
        let d = rule("api.github.com").unwrap();
        assert!(d.allows("API.GitHub.com.", 443));
        assert!(!d.allows("api.github.com", 22));
        let w = rule("*.npmjs.org").unwrap();
        assert!(w.allows("registry.npmjs.org", 443));
        assert!(w.allows("a.b.npmjs.org", 80));
        assert!(!w.allows("npmjs.org", 443));
        assert!(!w.allows("evilnpmjs.org", 443));
    }

    #[test]
    fn ports() {
        assert_eq!(rule("example.com:8443").unwrap().ports, vec![8443]);
        let d = parse_rule(&DomainRule::WithPorts(DomainWithPorts {
            host: "x.example.com".into(),
            ports: vec![443, 22, 443],
        }))
        .unwrap();
        assert_eq!(d.ports, vec![22, 443]);
        assert!(rule("example.com:0").unwrap_err().contains("out of range"));
        assert!(rule("example.com:70000")
            .unwrap_err()
            .contains("out of range"));
    }

    #[test]
    fn malformed() {
        assert!(rule("*").unwrap_err().contains("every domain"));
        assert!(rule("*.com").unwrap_err().contains("top-level"));
        assert!(rule("api.*.com").unwrap_err().contains("first label"));
        assert!(rule("https://api.github.com/v3")
            .unwrap_err()
            .contains("`api.github.com`"));
        assert!(rule("10.0.0.1").unwrap_err().contains("allowAddresses"));
        assert!(rule("bad..name").is_err());
        assert!(rule("-bad.com").is_err());
        assert!(rule("sp ace.com").is_err());
    }

    #[test]
    fn each_reason_is_its_own_variant() {
        let typed = |s: &str| parse_rule(&DomainRule::Name(s.into())).unwrap_err();
        assert_eq!(typed("example.com:0"), DomainError::PortOutOfRange(0));
        assert_eq!(
            typed("example.com:https"),
            DomainError::NotAPort {
                port: "https".into(),
                rule: "example.com:https".into()
            }
        );
        assert_eq!(
            typed("https://api.github.com/v3"),
            DomainError::Url {
                rule: "https://api.github.com/v3".into(),
                host: "api.github.com".into()
            }
        );
        assert_eq!(typed("*"), DomainError::EveryDomain);
        assert_eq!(typed("*.com"), DomainError::TopLevelWildcard("com".into()));
        assert_eq!(typed("10.0.0.1"), DomainError::IpAddress("10.0.0.1".into()));
        assert_eq!(
            typed("bad..name"),
            DomainError::EmptyLabel("bad..name".into())
        );
        assert_eq!(
            typed("-bad.com"),
            DomainError::HyphenAtEdge {
                label: "-bad".into(),
                name: "-bad.com".into()
            }
        );
        assert_eq!(
            typed("sp ace.com"),
            DomainError::BadCharacters("sp ace.com".into())
        );
        let no_ports = parse_rule(&DomainRule::WithPorts(DomainWithPorts {
            host: "x.example".into(),
            ports: vec![],
        }));
        assert_eq!(
            no_ports.unwrap_err().to_string(),
            "`x.example` lists no ports: remove `ports` for the defaults 80 and 443"
        );
    }
}
