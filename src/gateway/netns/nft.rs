//! The sandbox's nftables fence as data: [`render`] is pure (unit-tested against the ruleset
//! verified on the target kernels), [`Ruleset::to_text`] shows it in `nft` syntax, and
//! [`Ruleset::to_nftables`] converts it to the nftables crate's JSON schema for `nft -j`.
//!
//! Both chains hook OUTPUT in the sandbox's own netns. The nat chain redirects DNS to the
//! gateway's resolver and every other TCP connection to its transparent listener (returning
//! early for loopback and blocked ports). The filter chain accepts established/related flows,
//! loopback, and redirected traffic (`fib daddr type local`: in OUTPUT the output interface is
//! still the pre-NAT veth, so `oifname "lo"` alone would drop every redirected SYN), rejects
//! blocked ports with a TCP reset, and drops the rest (other UDP fails with EPERM at once).

use std::borrow::Cow;
use std::collections::HashSet;

use nftables::expr::{
    Expression, Fib, FibFlag, FibResult, Meta, MetaKey, NamedExpression, Payload, PayloadField,
    Prefix, SetItem, CT,
};
use nftables::schema::{Chain, NfCmd, NfListObject, NfObject, Nftables, Rule, Table};
use nftables::stmt::{Match, Operator, Reject, RejectType, Statement, NAT};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use crate::policy::types::DnsResolver;
use crate::policy::NetworkPolicy;

/// The table nemoclaw owns in each sandbox netns.
pub const TABLE: &str = "nemoclaw";

/// Where the gateway listens inside the sandbox netns (all on 127.0.0.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayPorts {
    /// Explicit proxy (`HTTP_PROXY=http://127.0.0.1:3128`).
    pub proxy: u16,
    /// Transparent listener that every other TCP connection is redirected to.
    pub transparent: u16,
    /// DNS, UDP and TCP.
    pub dns: u16,
    /// The inference gateway (`inference.local` resolves to 127.0.0.1).
    pub inference: u16,
}

impl Default for GatewayPorts {
    fn default() -> Self {
        GatewayPorts {
            proxy: 3128,
            transparent: 15001,
            dns: 53,
            inference: 80,
        }
    }
}

/// One match of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    /// `ip daddr 127.0.0.0/8`
    Ip4DaddrPrefix(&'static str, u8),
    /// `ip6 daddr ::1`
    Ip6Daddr(&'static str),
    /// `udp dport 53`
    UdpDport(u16),
    /// `tcp dport 53` or `tcp dport { 22, 25 }`
    TcpDport(Vec<u16>),
    /// `meta l4proto tcp`
    L4protoTcp,
    /// `oifname "lo"`
    OifLo,
    /// `ct state established,related`
    CtEstablishedRelated,
    /// `fib daddr type local`
    FibDaddrLocal,
}

/// What a rule does when its conditions match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Return,
    /// `redirect to :PORT`
    Redirect(u16),
    /// `reject with tcp reset`
    RejectTcpReset,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftRule {
    pub conds: Vec<Cond>,
    pub verdict: Verdict,
}

/// The whole `inet nemoclaw` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// `type nat hook output priority -100; policy accept;`
    pub nat_output: Vec<NftRule>,
    /// `type filter hook output priority 0; policy drop;`
    pub filter_output: Vec<NftRule>,
}

fn rule(conds: Vec<Cond>, verdict: Verdict) -> NftRule {
    NftRule { conds, verdict }
}

/// The fence for `policy` with the gateway on `ports` (pure).
pub fn render(policy: &NetworkPolicy, ports: &GatewayPorts) -> Ruleset {
    let blocked: Vec<u16> = policy.blocked_ports.iter().copied().collect();
    // DNS first, loopback included: a resolv.conf naming 127.0.0.53 (systemd-resolved hosts)
    // must reach the gateway too.
    let mut nat = Vec::new();
    if policy.dns == DnsResolver::Host {
        nat.push(rule(vec![Cond::UdpDport(53)], Verdict::Redirect(ports.dns)));
        nat.push(rule(
            vec![Cond::TcpDport(vec![53])],
            Verdict::Redirect(ports.dns),
        ));
    }
    nat.push(rule(
        vec![Cond::Ip4DaddrPrefix("127.0.0.0", 8)],
        Verdict::Return,
    ));
    nat.push(rule(vec![Cond::Ip6Daddr("::1")], Verdict::Return));
    if !blocked.is_empty() {
        nat.push(rule(vec![Cond::TcpDport(blocked.clone())], Verdict::Return));
    }
    nat.push(rule(
        vec![Cond::L4protoTcp],
        Verdict::Redirect(ports.transparent),
    ));

    let mut filter = vec![
        rule(vec![Cond::CtEstablishedRelated], Verdict::Accept),
        rule(vec![Cond::OifLo], Verdict::Accept),
        rule(vec![Cond::FibDaddrLocal], Verdict::Accept),
    ];
    if !blocked.is_empty() {
        filter.push(rule(vec![Cond::TcpDport(blocked)], Verdict::RejectTcpReset));
    }
    filter.push(rule(vec![], Verdict::Drop));
    Ruleset {
        nat_output: nat,
        filter_output: filter,
    }
}

impl Cond {
    fn text(&self) -> String {
        match self {
            Cond::Ip4DaddrPrefix(a, l) => format!("ip daddr {a}/{l}"),
            Cond::Ip6Daddr(a) => format!("ip6 daddr {a}"),
            Cond::UdpDport(p) => format!("udp dport {p}"),
            Cond::TcpDport(ps) if ps.len() == 1 => format!("tcp dport {}", ps[0]),
            Cond::TcpDport(ps) => {
                format!(
                    "tcp dport {{ {} }}",
                    ps.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
                )
            }
            Cond::L4protoTcp => "meta l4proto tcp".into(),
            Cond::OifLo => "oifname \"lo\"".into(),
            Cond::CtEstablishedRelated => "ct state established,related".into(),
            Cond::FibDaddrLocal => "fib daddr type local".into(),
        }
    }

    fn stmt(&self) -> Statement<'static> {
        let payload = |protocol: &'static str, field: &'static str| {
            Expression::Named(NamedExpression::Payload(Payload::PayloadField(
                PayloadField {
                    protocol: Cow::Borrowed(protocol),
                    field: Cow::Borrowed(field),
                },
            )))
        };
        let m = |left, right, op| Statement::Match(Match { left, right, op });
        let s = |v: &'static str| Expression::String(Cow::Borrowed(v));
        match self {
            Cond::Ip4DaddrPrefix(a, l) => m(
                payload("ip", "daddr"),
                Expression::Named(NamedExpression::Prefix(Prefix {
                    addr: Box::new(s(a)),
                    len: u32::from(*l),
                })),
                Operator::EQ,
            ),
            Cond::Ip6Daddr(a) => m(payload("ip6", "daddr"), s(a), Operator::EQ),
            Cond::UdpDport(p) => m(
                payload("udp", "dport"),
                Expression::Number(u32::from(*p)),
                Operator::EQ,
            ),
            Cond::TcpDport(ps) if ps.len() == 1 => m(
                payload("tcp", "dport"),
                Expression::Number(u32::from(ps[0])),
                Operator::EQ,
            ),
            Cond::TcpDport(ps) => m(
                payload("tcp", "dport"),
                Expression::Named(NamedExpression::Set(
                    ps.iter()
                        .map(|p| SetItem::Element(Expression::Number(u32::from(*p))))
                        .collect(),
                )),
                Operator::EQ,
            ),
            Cond::L4protoTcp => m(
                Expression::Named(NamedExpression::Meta(Meta {
                    key: MetaKey::L4proto,
                })),
                s("tcp"),
                Operator::EQ,
            ),
            Cond::OifLo => m(
                Expression::Named(NamedExpression::Meta(Meta {
                    key: MetaKey::Oifname,
                })),
                s("lo"),
                Operator::EQ,
            ),
            Cond::CtEstablishedRelated => m(
                Expression::Named(NamedExpression::CT(CT {
                    key: Cow::Borrowed("state"),
                    family: None,
                    dir: None,
                })),
                Expression::List(vec![s("established"), s("related")]),
                Operator::IN,
            ),
            Cond::FibDaddrLocal => m(
                Expression::Named(NamedExpression::Fib(Fib {
                    result: FibResult::Type,
                    flags: HashSet::from([FibFlag::Daddr]),
                })),
                s("local"),
                Operator::EQ,
            ),
        }
    }
}

impl Verdict {
    fn text(&self) -> String {
        match self {
            Verdict::Accept => "accept".into(),
            Verdict::Drop => "drop".into(),
            Verdict::Return => "return".into(),
            Verdict::Redirect(p) => format!("redirect to :{p}"),
            Verdict::RejectTcpReset => "reject with tcp reset".into(),
        }
    }

    fn stmt(&self) -> Statement<'static> {
        match self {
            Verdict::Accept => Statement::Accept(None),
            Verdict::Drop => Statement::Drop(None),
            Verdict::Return => Statement::Return(None),
            Verdict::Redirect(p) => Statement::Redirect(Some(NAT {
                addr: None,
                family: None,
                port: Some(Expression::Number(u32::from(*p))),
                flags: None,
            })),
            Verdict::RejectTcpReset => {
                Statement::Reject(Some(Reject::new(Some(RejectType::TCPReset), None)))
            }
        }
    }
}

impl NftRule {
    pub fn to_text(&self) -> String {
        let mut parts: Vec<String> = self.conds.iter().map(Cond::text).collect();
        parts.push(self.verdict.text());
        parts.join(" ")
    }
}

const NAT_CHAIN: &str = "nat_output";
const FILTER_CHAIN: &str = "filter_output";

impl Ruleset {
    /// The table in `nft -f` syntax (what `nft list table inet nemoclaw` shows, modulo spacing).
    pub fn to_text(&self) -> String {
        let mut out = format!("table inet {TABLE} {{\n");
        for (name, head, rules) in [
            (
                NAT_CHAIN,
                "type nat hook output priority -100; policy accept;",
                &self.nat_output,
            ),
            (
                FILTER_CHAIN,
                "type filter hook output priority 0; policy drop;",
                &self.filter_output,
            ),
        ] {
            out.push_str(&format!("\tchain {name} {{\n\t\t{head}\n"));
            for r in rules {
                out.push_str(&format!("\t\t{}\n", r.to_text()));
            }
            out.push_str("\t}\n");
        }
        out.push_str("}\n");
        out
    }

    /// One atomic `nft -j` batch: (re)create the table from scratch, so applying it again on
    /// reload replaces the previous fence in a single transaction.
    pub fn to_nftables(&self) -> Nftables<'static> {
        let table = || Table {
            family: NfFamily::INet,
            name: Cow::Borrowed(TABLE),
            handle: None,
        };
        let mut objs = vec![
            NfObject::CmdObject(NfCmd::Add(NfListObject::Table(table()))),
            NfObject::CmdObject(NfCmd::Delete(NfListObject::Table(table()))),
            NfObject::CmdObject(NfCmd::Add(NfListObject::Table(table()))),
        ];
        for (name, ty, prio, policy, rules) in [
            (
                NAT_CHAIN,
                NfChainType::NAT,
                -100,
                NfChainPolicy::Accept,
                &self.nat_output,
            ),
            (
                FILTER_CHAIN,
                NfChainType::Filter,
                0,
                NfChainPolicy::Drop,
                &self.filter_output,
            ),
        ] {
            objs.push(NfObject::CmdObject(NfCmd::Add(NfListObject::Chain(
                Chain {
                    family: NfFamily::INet,
                    table: Cow::Borrowed(TABLE),
                    name: Cow::Borrowed(name),
                    _type: Some(ty),
                    hook: Some(NfHook::Output),
                    prio: Some(prio),
                    policy: Some(policy),
                    ..Chain::default()
                },
            ))));
            for r in rules {
                let mut expr: Vec<Statement<'static>> = r.conds.iter().map(Cond::stmt).collect();
                expr.push(r.verdict.stmt());
                objs.push(NfObject::CmdObject(NfCmd::Add(NfListObject::Rule(Rule {
                    family: NfFamily::INet,
                    table: Cow::Borrowed(TABLE),
                    chain: Cow::Borrowed(name),
                    expr: Cow::Owned(expr),
                    handle: None,
                    index: None,
                    comment: None,
                }))));
            }
        }
        Nftables {
            objects: Cow::Owned(objs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::types::{Dns, Egress, Network};

    fn policy(blocked: &[u32], dns: DnsResolver) -> NetworkPolicy {
        let net = Network {
            egress: Egress {
                blocked_ports: blocked.to_vec(),
                ..Egress::default()
            },
            dns: Dns { resolver: dns },
            ingress: vec![],
        };
        NetworkPolicy::compile(&net, None).unwrap()
    }

    /// The ruleset verified on a Debian 12 host with a 6.18 kernel (issue 4), plus the IPv6
    /// loopback return and DNS over TCP, with DNS redirected before the loopback return.
    #[test]
    fn matches_the_verified_ruleset() {
        let text = render(
            &policy(&[25, 22], DnsResolver::Host),
            &GatewayPorts::default(),
        )
        .to_text();
        let expected = "table inet nemoclaw {
\tchain nat_output {
\t\ttype nat hook output priority -100; policy accept;
\t\tudp dport 53 redirect to :53
\t\ttcp dport 53 redirect to :53
\t\tip daddr 127.0.0.0/8 return
\t\tip6 daddr ::1 return
\t\ttcp dport { 22, 25 } return
\t\tmeta l4proto tcp redirect to :15001
\t}
\tchain filter_output {
\t\ttype filter hook output priority 0; policy drop;
\t\tct state established,related accept
\t\toifname \"lo\" accept
\t\tfib daddr type local accept
\t\ttcp dport { 22, 25 } reject with tcp reset
\t\tdrop
\t}
}
";
        assert_eq!(text, expected);
    }

    #[test]
    fn no_dns_and_no_blocked_ports() {
        let rs = render(&policy(&[], DnsResolver::None), &GatewayPorts::default());
        let text = rs.to_text();
        assert!(!text.contains("dport 53"), "{text}");
        assert!(!text.contains("reject"), "{text}");
        assert_eq!(
            rs.nat_output.last().unwrap().to_text(),
            "meta l4proto tcp redirect to :15001"
        );
    }

    #[test]
    fn json_batch_recreates_the_table_atomically() {
        let rs = render(&policy(&[22], DnsResolver::Host), &GatewayPorts::default());
        let json = serde_json::to_value(rs.to_nftables()).unwrap();
        let objs = json["nftables"].as_array().unwrap();
        assert_eq!(objs[0]["add"]["table"]["name"], "nemoclaw");
        assert_eq!(objs[1]["delete"]["table"]["family"], "inet");
        let rules: Vec<_> = objs
            .iter()
            .filter(|o| o["add"].get("rule").is_some())
            .collect();
        assert_eq!(rules.len(), rs.nat_output.len() + rs.filter_output.len());
        let s = json.to_string();
        assert!(s.contains(r#""redirect":{"port":15001}"#), "{s}");
        assert!(s.contains(r#""reject":{"type":"tcp reset"}"#), "{s}");
        assert!(
            s.contains(r#""fib":{"flags":["daddr"],"result":"type"}"#),
            "{s}"
        );
    }
}
