//! The compiled network policy of one sandbox and the decisions taken with it (pure).
//!
//! [`NetworkPolicy::compile`] turns a blueprint's `network` section (presets expanded) into the
//! one value that both the kernel fence ([`super::nft`]) and the egress gateway use, so the
//! rules that `validate` accepts are exactly the ones enforced. The gateway decides in two
//! steps: [`NetworkPolicy::decide_name`] (domain and port), then [`NetworkPolicy::choose_address`]
//! on its own resolution of the name (the SSRF guard: the address it returns is the one to dial).

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde::Serialize;

use super::addr::{special_purpose, Cidr, CidrError};
use super::domain::{check_port, parse_rule, DomainError, DomainSpec};
use super::presets::{all_presets, PresetFileError};
use super::types::{DnsResolver, Network};

/// Errors compiling a policy: each names the offending entry and how to fix it. The entry's
/// own error is the source (printed after the section by the error chain).
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("network.egress.allowedDomains")]
    Domain(#[source] DomainError),
    #[error("preset `{preset}`")]
    PresetEntry {
        preset: String,
        #[source]
        source: DomainError,
    },
    #[error("unknown preset `{0}`: `nemoclaw presets list` shows the built-in ones; user presets live in the home's presets/<name>.yaml")]
    UnknownPreset(String),
    #[error("preset file {path}")]
    PresetFile {
        path: String,
        #[source]
        source: PresetFileError,
    },
    #[error("network.egress.blockedPorts")]
    Port(#[source] DomainError),
    #[error("network.egress.allowAddresses")]
    Address(#[from] AddressError),
    #[error("network.ingress")]
    Ingress(#[source] DomainError),
}

/// What is wrong with an `allowAddresses` entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("`{0}`: expected `:PORT` after `]`")]
    PortExpected(String),
    #[error("`{0}`: missing `]`")]
    MissingBracket(String),
    #[error(transparent)]
    Range(#[from] CidrError),
    #[error("`{port}` in `{rule}` is not a port number")]
    NotAPort { port: String, rule: String },
    #[error(transparent)]
    Port(#[from] DomainError),
}

/// Why the SSRF guard refuses every resolved address of a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsrfRefusal {
    #[error("{ip} is {why}")]
    SpecialPurpose { ip: IpAddr, why: &'static str },
    #[error("the name has no IPv4 address")]
    NoAddress,
}

/// One allowed-domain rule and where it came from (for the `rule` field of decisions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedDomain {
    pub spec: DomainSpec,
    /// `allowedDomains` or `preset <name>`.
    pub source: String,
}

impl fmt::Display for AllowedDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.spec, self.source)
    }
}

/// An `allowAddresses` entry: `CIDR` exempts the range from the SSRF guard for allowed names;
/// `CIDR:PORT` also admits connections that carry no name (IP literals, other protocols) to
/// that range and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressRule {
    pub net: Cidr,
    pub port: Option<u16>,
}

impl fmt::Display for AddressRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p}", self.net),
            None => write!(f, "{}", self.net),
        }
    }
}

/// `network.ingress`: host loopback `host_port` forwarded to `port` inside the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngressRule {
    pub host_port: u16,
    pub port: u16,
}

/// Everything the fence and the gateway enforce for one sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPolicy {
    pub domains: Vec<AllowedDomain>,
    pub blocked_ports: BTreeSet<u16>,
    pub allow_addresses: Vec<AddressRule>,
    pub dns: DnsResolver,
    pub ingress: Vec<IngressRule>,
}

impl NetworkPolicy {
    /// Compiles a blueprint's `network` section; `user_presets` is the home's presets dir.
    pub fn compile(
        net: &Network,
        user_presets: Option<&Path>,
    ) -> Result<NetworkPolicy, PolicyError> {
        let mut domains = Vec::new();
        for rule in &net.egress.allowed_domains {
            let spec = parse_rule(rule).map_err(PolicyError::Domain)?;
            domains.push(AllowedDomain {
                spec,
                source: "allowedDomains".into(),
            });
        }
        if !net.egress.presets.is_empty() {
            let presets = all_presets(user_presets)?;
            for name in &net.egress.presets {
                let p = presets
                    .get(name)
                    .ok_or_else(|| PolicyError::UnknownPreset(name.clone()))?;
                for rule in &p.domains {
                    let spec = parse_rule(rule).map_err(|source| PolicyError::PresetEntry {
                        preset: name.clone(),
                        source,
                    })?;
                    domains.push(AllowedDomain {
                        spec,
                        source: format!("preset {name}"),
                    });
                }
            }
        }
        let mut blocked_ports = BTreeSet::new();
        for &p in &net.egress.blocked_ports {
            blocked_ports.insert(check_port(p).map_err(PolicyError::Port)?);
        }
        let allow_addresses = net
            .egress
            .allow_addresses
            .iter()
            .map(|s| parse_address_rule(s).map_err(PolicyError::from))
            .collect::<Result<_, _>>()?;
        let mut ingress = Vec::new();
        for i in &net.ingress {
            let host_port = check_port(i.host_port).map_err(PolicyError::Ingress)?;
            let port = check_port(i.port).map_err(PolicyError::Ingress)?;
            ingress.push(IngressRule { host_port, port });
        }
        Ok(NetworkPolicy {
            domains,
            blocked_ports,
            allow_addresses,
            dns: net.dns.resolver,
            ingress,
        })
    }

    /// The denial of a port in `blockedPorts`, whatever the destination.
    fn blocked(&self, host: &str, port: u16) -> Option<Decision> {
        self.blocked_ports.contains(&port).then(|| {
            Decision::deny(
                host,
                port,
                "blockedPorts",
                format!("port {port} is in network.egress.blockedPorts"),
            )
        })
    }

    /// Decision on a name and port, before any resolution.
    pub fn decide_name(&self, host: &str, port: u16) -> Decision {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some(d) = self.blocked(&host, port) {
            return d;
        }
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
            return self.decide_address(ip, port);
        }
        match self.domains.iter().find(|d| d.spec.allows(&host, port)) {
            Some(d) => Decision::allow(&host, port, d.to_string()),
            None => {
                let other_port = self.domains.iter().find(|d| d.spec.pattern.matches(&host));
                let hint = match other_port {
                    Some(d) => format!("{} allows ports {:?} only: add `{host}:{port}` to network.egress.allowedDomains", d.spec.pattern, d.spec.ports),
                    None => "add it to network.egress.allowedDomains".into(),
                };
                Decision::deny(&host, port, "no allowedDomains entry matches", hint)
            }
        }
    }

    /// Decision on a connection that names no host (an IP literal, a protocol without SNI or
    /// Host): allowed only by an `allowAddresses` entry with that port.
    pub fn decide_address(&self, ip: IpAddr, port: u16) -> Decision {
        let host = ip.to_string();
        if let Some(d) = self.blocked(&host, port) {
            return d;
        }
        match self.allow_addresses.iter().find(|r| r.port == Some(port) && r.net.contains(ip)) {
            Some(r) => Decision::allow(&host, port, format!("{r} (allowAddresses)")),
            None => Decision::deny(
                &host,
                port,
                "no name (IP address or a protocol without TLS SNI or HTTP Host)",
                format!("connect by a name listed in network.egress.allowedDomains, or add `{}/{}:{port}` to network.egress.allowAddresses", ip, if ip.is_ipv4() { 32 } else { 128 }),
            ),
        }
    }

    /// The SSRF guard: the first resolved address that is public or covered by
    /// `allowAddresses`, or the reason none is. Dial exactly the returned address.
    pub fn choose_address(&self, addrs: &[IpAddr]) -> Result<IpAddr, SsrfRefusal> {
        let mut first_refusal = None;
        for &ip in addrs {
            match special_purpose(ip) {
                None => return Ok(ip),
                Some(why) => {
                    if self.allow_addresses.iter().any(|r| r.net.contains(ip)) {
                        return Ok(ip);
                    }
                    first_refusal.get_or_insert(SsrfRefusal::SpecialPurpose { ip, why });
                }
            }
        }
        Err(first_refusal.unwrap_or(SsrfRefusal::NoAddress))
    }

    /// Whether DNS may answer `name` (some allowed-domain rule matches it on any port).
    pub fn name_is_allowed(&self, name: &str) -> bool {
        self.domains.iter().any(|d| d.spec.pattern.matches(name))
    }

    /// The expanded domain list, one display string per rule (what `plan` shows).
    pub fn domain_list(&self) -> Vec<String> {
        self.domains.iter().map(ToString::to_string).collect()
    }
}

/// Parses `CIDR` or `CIDR:PORT` (IPv6 with a port as `[fd00::/8]:PORT`).
pub fn parse_address_rule(s: &str) -> Result<AddressRule, AddressError> {
    let s = s.trim();
    let (net, port) = if let Some(rest) = s.strip_prefix('[') {
        match rest.split_once(']') {
            Some((net, "")) => (net, None),
            Some((net, p)) => (
                net,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| AddressError::PortExpected(s.to_string()))?,
                ),
            ),
            None => return Err(AddressError::MissingBracket(s.to_string())),
        }
    } else if s.matches(':').count() == 1 {
        let (n, p) = s.split_once(':').expect("one colon");
        (n, Some(p))
    } else {
        (s, None)
    };
    let net: Cidr = net.parse()?;
    let port = match port {
        None => None,
        Some(p) => {
            let number = p.parse().map_err(|_| AddressError::NotAPort {
                port: p.to_string(),
                rule: s.to_string(),
            })?;
            Some(check_port(number)?)
        }
    };
    Ok(AddressRule { net, port })
}

/// Allow or deny, with the rule that decided (logged, and sent in the 403 body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub allowed: bool,
    pub host: String,
    pub port: u16,
    pub rule: String,
    /// What to change to allow it (denials only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Decision {
    pub fn allow(host: &str, port: u16, rule: String) -> Decision {
        Decision {
            allowed: true,
            host: host.to_string(),
            port,
            rule,
            hint: None,
        }
    }

    pub fn deny(host: &str, port: u16, rule: &str, hint: String) -> Decision {
        Decision {
            allowed: false,
            host: host.to_string(),
            port,
            rule: rule.to_string(),
            hint: Some(hint),
        }
    }

    /// The JSON body of a 403: `{"error":"policy_denied","host","port","rule","hint"}`.
    pub fn denial_body(&self) -> String {
        serde_json::json!({
            "error": "policy_denied",
            "host": self.host,
            "port": self.port,
            "rule": self.rule,
            "hint": self.hint.clone().unwrap_or_else(|| "add it to network.egress.allowedDomains".into()),
        })
        .to_string()
    }
}

/// The policy that the gateway reads on every new connection and DNS query; cloning shares it.
#[derive(Debug, Clone)]
pub struct PolicyHandle(Arc<RwLock<Arc<NetworkPolicy>>>);

impl PolicyHandle {
    pub fn new(policy: NetworkPolicy) -> PolicyHandle {
        PolicyHandle(Arc::new(RwLock::new(Arc::new(policy))))
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<NetworkPolicy> {
        crate::sync::read(&self.0).clone()
    }

    /// Swaps in `policy`: new connections and queries follow it at once.
    pub fn reload(&self, policy: NetworkPolicy) {
        *crate::sync::write(&self.0) = Arc::new(policy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::types::{Dns, DomainRule, Egress, Ingress};

    /// A network section that names one preset and nothing else.
    fn with_preset(name: &str) -> Network {
        Network {
            egress: Egress {
                presets: vec![name.into()],
                ..Egress::default()
            },
            ..Network::default()
        }
    }

    fn policy(
        domains: &[&str],
        blocked: &[u32],
        allow: &[&str],
        presets: &[&str],
    ) -> NetworkPolicy {
        let net = Network {
            egress: Egress {
                allowed_domains: domains
                    .iter()
                    .map(|d| DomainRule::Name((*d).into()))
                    .collect(),
                blocked_ports: blocked.to_vec(),
                presets: presets.iter().map(|p| (*p).to_string()).collect(),
                allow_addresses: allow.iter().map(|a| (*a).to_string()).collect(),
            },
            dns: Dns::default(),
            ingress: vec![Ingress {
                host_port: 18080,
                port: 8080,
            }],
        };
        NetworkPolicy::compile(&net, None).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn names_ports_and_wildcards() {
        let p = policy(
            &["api.test.example", "*.cdn.example", "git.example:8443"],
            &[22],
            &[],
            &[],
        );
        let d = p.decide_name("API.test.example.", 443);
        assert!(d.allowed, "{d:?}");
        assert_eq!(d.rule, "api.test.example (allowedDomains)");
        assert!(p.decide_name("a.b.cdn.example", 80).allowed);
        assert!(!p.decide_name("cdn.example", 443).allowed);
        assert!(!p.decide_name("evil.example", 443).allowed);
        let d = p.decide_name("api.test.example", 8080);
        assert!(!d.allowed && d.hint.as_deref().unwrap().contains("api.test.example:8080"));
        assert!(p.decide_name("git.example", 8443).allowed);
        assert!(!p.decide_name("git.example", 443).allowed);
        let d = p.decide_name("api.test.example", 22);
        assert!(!d.allowed);
        assert_eq!(d.rule, "blockedPorts");
        assert!(p.name_is_allowed("x.cdn.example") && !p.name_is_allowed("other.example"));
        assert_eq!(
            p.ingress,
            vec![IngressRule {
                host_port: 18080,
                port: 8080
            }]
        );
    }

    #[test]
    fn presets_expand() {
        let p = policy(&[], &[], &[], &["github"]);
        let d = p.decide_name("api.github.com", 443);
        assert!(d.allowed);
        assert_eq!(d.rule, "api.github.com (preset github)");
        assert!(p.decide_name("raw.githubusercontent.com", 443).allowed);
        let net = with_preset("nope");
        assert!(NetworkPolicy::compile(&net, None)
            .unwrap_err()
            .to_string()
            .contains("unknown preset `nope`"));
    }

    #[test]
    fn user_presets_from_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("internal.yaml"), "description: corp\ndomains:\n  - wiki.corp.example\n  - {host: git.corp.example, ports: [22]}\n").unwrap();
        std::fs::write(dir.path().join("bad.yaml"), "domains: []\n").unwrap();
        let err = crate::error_chain(&all_presets(Some(dir.path())).unwrap_err());
        assert!(err.contains("bad.yaml") && err.contains("empty"), "{err}");
        std::fs::remove_file(dir.path().join("bad.yaml")).unwrap();
        let all = all_presets(Some(dir.path())).unwrap();
        assert_eq!(all["internal"].description, "corp");
        assert_eq!(all["github"].source, "builtin");
        let net = with_preset("internal");
        let p = NetworkPolicy::compile(&net, Some(dir.path())).unwrap();
        assert!(p.decide_name("git.corp.example", 22).allowed);
        assert!(!p.decide_name("git.corp.example", 443).allowed);
        assert!(p.decide_name("wiki.corp.example", 443).allowed);
    }

    #[test]
    fn ssrf_guard() {
        let p = policy(&["x.example"], &[], &["198.18.0.0/15"], &[]);
        assert_eq!(p.choose_address(&[ip("198.18.0.2")]), Ok(ip("198.18.0.2")));
        assert!(p
            .choose_address(&[ip("127.0.0.1")])
            .unwrap_err()
            .to_string()
            .contains("loopback"));
        assert!(p
            .choose_address(&[ip("169.254.169.254")])
            .unwrap_err()
            .to_string()
            .contains("metadata"));
        assert_eq!(
            p.choose_address(&[ip("10.0.0.1"), ip("93.184.216.34")]),
            Ok(ip("93.184.216.34"))
        );
        assert!(p.choose_address(&[]).is_err());
    }

    #[test]
    fn addresses_need_a_port_to_admit_nameless_connections() {
        let p = policy(
            &[],
            &[],
            &["198.18.0.0/15", "198.18.0.9:5432", "[fd00::/8]:443"],
            &[],
        );
        assert!(!p.decide_address(ip("198.18.0.2"), 443).allowed);
        assert!(p.decide_address(ip("198.18.0.9"), 5432).allowed);
        assert!(!p.decide_address(ip("198.18.0.9"), 5433).allowed);
        assert!(p.decide_address(ip("fd00::1"), 443).allowed);
        assert!(p.decide_name("198.18.0.9", 5432).allowed);
        assert!(parse_address_rule("10.0.0.0/8:99999")
            .unwrap_err()
            .to_string()
            .contains("out of range"));
        assert!(parse_address_rule("nonsense").is_err());
    }

    #[test]
    fn denial_body_shape() {
        let p = policy(&["ok.example"], &[], &[], &[]);
        let v: serde_json::Value =
            serde_json::from_str(&p.decide_name("bad.example", 443).denial_body()).unwrap();
        assert_eq!(v["error"], "policy_denied");
        assert_eq!(v["host"], "bad.example");
        assert_eq!(v["port"], 443);
        assert_eq!(v["hint"], "add it to network.egress.allowedDomains");
        assert!(v["rule"].is_string());
    }

    #[test]
    fn handle_reload_is_seen_by_clones() {
        let h = PolicyHandle::new(NetworkPolicy::compile(&Network::default(), None).unwrap());
        let h2 = h.clone();
        assert!(!h2.current().decide_name("a.example", 443).allowed);
        let mut net = Network::default();
        net.egress
            .allowed_domains
            .push(DomainRule::Name("a.example".into()));
        h.reload(NetworkPolicy::compile(&net, None).unwrap());
        assert!(h2.current().decide_name("a.example", 443).allowed);
    }

    #[test]
    fn the_ssrf_refusal_is_typed_and_keeps_its_text() {
        let p = policy(&["x.example"], &[], &[], &[]);
        assert_eq!(
            p.choose_address(&[ip("10.0.0.1"), ip("127.0.0.1")]),
            Err(SsrfRefusal::SpecialPurpose {
                ip: ip("10.0.0.1"),
                why: "a private address"
            })
        );
        assert_eq!(p.choose_address(&[]), Err(SsrfRefusal::NoAddress));
        assert_eq!(
            p.choose_address(&[ip("10.0.0.1")])
                .map_err(|e| e.to_string()),
            Err("10.0.0.1 is a private address".to_string())
        );
        assert_eq!(
            p.choose_address(&[]).map_err(|e| e.to_string()),
            Err("the name has no IPv4 address".to_string())
        );
    }

    #[test]
    fn address_rule_errors_are_typed() {
        assert_eq!(
            parse_address_rule("[fd00::/8"),
            Err(AddressError::MissingBracket("[fd00::/8".into()))
        );
        assert_eq!(
            parse_address_rule("[fd00::/8]443"),
            Err(AddressError::PortExpected("[fd00::/8]443".into()))
        );
        assert_eq!(
            parse_address_rule("10.0.0.0/8:x"),
            Err(AddressError::NotAPort {
                port: "x".into(),
                rule: "10.0.0.0/8:x".into()
            })
        );
        assert_eq!(
            parse_address_rule("10.0.0.0/8:0"),
            Err(AddressError::Port(DomainError::PortOutOfRange(0)))
        );
        assert!(matches!(
            parse_address_rule("nonsense"),
            Err(AddressError::Range(CidrError::NotARange(_)))
        ));
    }

    #[test]
    fn policy_errors_keep_their_source_and_print_the_old_text() {
        let compile_err = |egress: Egress| {
            let net = Network {
                egress,
                ..Network::default()
            };
            NetworkPolicy::compile(&net, None).unwrap_err()
        };
        let e = compile_err(Egress {
            allowed_domains: vec![DomainRule::Name("*".into())],
            ..Egress::default()
        });
        assert!(matches!(e, PolicyError::Domain(DomainError::EveryDomain)));
        assert_eq!(
            crate::error_chain(&e),
            "network.egress.allowedDomains: `*` would allow every domain: list the domains the agent needs, or use a preset"
        );
        let e = compile_err(Egress {
            blocked_ports: vec![70000],
            ..Egress::default()
        });
        assert!(matches!(
            e,
            PolicyError::Port(DomainError::PortOutOfRange(70000))
        ));
        assert_eq!(
            crate::error_chain(&e),
            "network.egress.blockedPorts: port 70000 is out of range: ports are 1 to 65535"
        );
        let e = compile_err(Egress {
            allow_addresses: vec!["10.0.0.0/33".into()],
            ..Egress::default()
        });
        assert_eq!(
            crate::error_chain(&e),
            "network.egress.allowAddresses: `10.0.0.0/33`: the prefix length must be 0 to 32"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("star.yaml"), "domains: ['*']\n").unwrap();
        let net = with_preset("star");
        let e = NetworkPolicy::compile(&net, Some(dir.path())).unwrap_err();
        assert!(matches!(
            &e,
            PolicyError::PresetEntry { preset, source: DomainError::EveryDomain } if preset == "star"
        ));
        assert!(
            crate::error_chain(&e).starts_with("preset `star`: `*` would allow every domain"),
            "{e}"
        );
    }
}
