//! Checks of the `network` section: domains, ports, presets, address ranges, ingress.

use std::collections::HashSet;

use super::{Context, Findings};
use crate::blueprint::diag::did_you_mean;
use crate::blueprint::types::*;
use crate::policy::domain::{check_port, parse_rule};
use crate::policy::network::{parse_address_rule, AddressError};

/// Why validation refuses an `allowAddresses` entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressRuleError {
    #[error(transparent)]
    Syntax(#[from] AddressError),
    #[error("`{0}` allows every address: name the ranges the agent needs")]
    EveryAddress(String),
}

/// Checks an `allowAddresses` entry: `CIDR` (exempt from the SSRF guard) or `CIDR:PORT` (also
/// allows connections that carry no name), parsed exactly as the gateway parses it. A range
/// that covers every address is refused.
pub fn check_address_rule(s: &str) -> Result<(), AddressRuleError> {
    let rule = parse_address_rule(s)?;
    if rule.net.prefix == 0 {
        return Err(AddressRuleError::EveryAddress(s.to_string()));
    }
    Ok(())
}

pub(super) fn check_network(n: &Network, ctx: &Context<'_>, f: &mut Findings) {
    let mut seen = HashSet::new();
    for (i, d) in n.egress.allowed_domains.iter().enumerate() {
        let path = format!("network.egress.allowedDomains[{i}]");
        match parse_rule(d) {
            Ok(spec) => {
                if !seen.insert(spec.clone()) {
                    f.err(
                        "network.duplicate-domain",
                        &path,
                        format!("`{spec}` is listed twice"),
                    )
                    .warn();
                }
            }
            Err(m) => {
                f.err("network.domain", &path, m);
            }
        }
    }
    for (i, &p) in n.egress.blocked_ports.iter().enumerate() {
        if let Err(m) = check_port(p) {
            f.err(
                "network.port",
                format!("network.egress.blockedPorts[{i}]"),
                m,
            );
        }
    }
    for (i, p) in n.egress.presets.iter().enumerate() {
        if !ctx.presets.contains(p) {
            let e = f.err(
                "network.unknown-preset",
                format!("network.egress.presets[{i}]"),
                format!("unknown preset `{p}`"),
            );
            match did_you_mean(p, ctx.presets.iter().map(String::as_str)) {
                Some(s) => e.hint(format!("did you mean `{s}`?")),
                None => e.hint(format!("`nemoclaw presets list` shows the built-ins; define your own in presets/{p}.yaml beside the blueprints")),
            };
        }
    }
    for (i, a) in n.egress.allow_addresses.iter().enumerate() {
        if let Err(m) = check_address_rule(a) {
            f.err(
                "network.cidr",
                format!("network.egress.allowAddresses[{i}]"),
                m,
            );
        }
    }
    let mut host_ports = HashSet::new();
    for (i, ing) in n.ingress.iter().enumerate() {
        let path = format!("network.ingress[{i}]");
        if let Err(m) = check_port(ing.host_port) {
            f.err("network.port", format!("{path}.hostPort"), m);
        } else if !host_ports.insert(ing.host_port) {
            f.err(
                "network.ingress-duplicate",
                format!("{path}.hostPort"),
                format!("host port {} is forwarded twice", ing.host_port),
            );
        }
        if let Err(m) = check_port(ing.port) {
            f.err("network.port", format!("{path}.port"), m);
        }
    }
}

/// Whether a host path lexically points into a nemoclaw home.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_rules() {
        assert!(check_address_rule("198.18.0.0/15").is_ok());
        assert!(check_address_rule("198.18.0.4:8080").is_ok());
        assert!(check_address_rule("10.0.0.1").is_ok());
        assert!(check_address_rule("[fd00::/8]:443").is_ok());
        assert!(check_address_rule("0.0.0.0/0")
            .unwrap_err()
            .to_string()
            .contains("every address"));
        assert!(check_address_rule("10.0.0.0/33").is_err());
        assert!(check_address_rule("example.com").is_err());
        assert!(check_address_rule("10.0.0.1:70000").is_err());
    }

    #[test]
    fn address_rule_errors_are_typed() {
        assert_eq!(
            check_address_rule("[::/0]:443"),
            Err(AddressRuleError::EveryAddress("[::/0]:443".into()))
        );
        assert!(matches!(
            check_address_rule("10.0.0.1:70000"),
            Err(AddressRuleError::Syntax(AddressError::Port(_)))
        ));
    }
}
