//! The vocabulary of a blueprint's `network` section (`egress`, `dns`, `ingress`), as the
//! blueprint schema declares it and the policy compiles it. [`crate::blueprint::types`]
//! re-exports these types, so a blueprint reads them under its own name.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Egress ports allowed for a domain that names none.
pub const DOMAIN_PORTS: [u16; 2] = [80, 443];

pub(crate) fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Network {
    #[serde(default, skip_serializing_if = "is_default")]
    pub egress: Egress,
    #[serde(default, skip_serializing_if = "is_default")]
    pub dns: Dns,
    /// Host loopback ports forwarded into the sandbox (e.g. an agent's dashboard).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Ingress>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Egress {
    /// Domains the agent may reach: `example.com`, `*.example.com`, `example.com:8443`, or
    /// `{host, ports}`. Ports default to 80 and 443.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_domains: Vec<DomainRule>,
    /// TCP ports refused at once, whatever the destination.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_ports: Vec<u32>,
    /// Named domain lists shipped with nemoclaw (`github`, `npm`, `pypi`, ...) or defined in the
    /// source's `presets/<name>.yaml`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub presets: Vec<String>,
    /// Address ranges (CIDR) that the SSRF guard would otherwise deny (private, loopback,
    /// link-local), e.g. an internal model server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_addresses: Vec<String>,
}

/// An allowed domain: a string (`host` or `host:port`) or a map with explicit ports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum DomainRule {
    Name(String),
    WithPorts(DomainWithPorts),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DomainWithPorts {
    pub host: String,
    pub ports: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "is_default")]
    pub resolver: DnsResolver,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DnsResolver {
    /// The gateway answers allowed names from the host's resolver, NXDOMAIN for the rest.
    #[default]
    Host,
    /// No DNS at all inside the sandbox.
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ingress {
    /// Port on the host's loopback (127.0.0.1).
    pub host_port: u32,
    /// Port inside the sandbox.
    pub port: u32,
}

// Hand-written, like the blueprint's other many-shaped values: serde's untagged enums would
// answer "data did not match any variant"; this says what is wrong, and the map form keeps
// `deny_unknown_fields` with its did-you-mean.
mod shapes {
    use std::fmt;

    use serde::de::value::MapAccessDeserializer;
    use serde::de::{self, Deserializer, MapAccess, Visitor};
    use serde::Deserialize;

    use super::{DomainRule, DomainWithPorts};

    impl<'de> Deserialize<'de> for DomainRule {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = DomainRule;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a domain (`example.com`, `*.example.com`, `example.com:8443`) or {host, ports}")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<DomainRule, E> {
                    Ok(DomainRule::Name(v.to_string()))
                }
                fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<DomainRule, A::Error> {
                    DomainWithPorts::deserialize(MapAccessDeserializer::new(m))
                        .map(DomainRule::WithPorts)
                }
            }
            d.deserialize_any(V)
        }
    }
}
