//! Checks of the `network` section: domains, ports, presets, address ranges, ingress.

use std::collections::HashSet;
use std::net::IpAddr;

use super::{Context, Findings};
use crate::blueprint::diag::did_you_mean;
use crate::blueprint::domain::{check_port, parse_rule};
use crate::blueprint::types::*;

pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip: IpAddr = addr
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not an IP address or CIDR range (e.g. 198.18.0.0/15)"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => l
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|&n| n <= max)
            .ok_or_else(|| format!("`{s}`: prefix length must be 0 to {max}"))?,
    };
    if len == 0 {
        return Err(format!(
            "`{s}` allows every address: name the ranges the agent needs"
        ));
    }
    Ok((ip, len))
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
        if let Err(m) = parse_cidr(a) {
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
    fn cidrs() {
        assert_eq!(parse_cidr("198.18.0.0/15").unwrap().1, 15);
        assert_eq!(parse_cidr("10.0.0.1").unwrap().1, 32);
        assert!(parse_cidr("0.0.0.0/0").is_err());
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("example.com").is_err());
    }
}
