//! The sandbox DNS resolver (`dns.resolver: host`): allowed names are answered from the
//! gateway's upstream resolver, `inference.local` is 127.0.0.1, every other name is NXDOMAIN
//! (so lookups cannot carry data out), and no AAAA records are given (the sandbox has no IPv6
//! route). The fence redirects port 53 to this server whatever resolver the agent aims at.
//! Every name refused by the policy is a `deny` line (mode `dns`) in `egress.jsonl` (once per
//! name per [`REFUSAL_LOG_WINDOW`], at most [`REFUSAL_LINES_PER_WINDOW`] lines a window): an
//! agent probing for a way out shows there even when it never gets as far as a connection.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::authority::MessageResponseBuilder;
use hickory_server::proto::op::{Header, ResponseCode};
use hickory_server::proto::rr::rdata::A;
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::ServerFuture;

use crate::gateway::egress::{Egress, EgressRecord, Resolve};
use crate::policy::{PolicyHandle, INFERENCE_HOST};

/// TTL of answers: short, so a reload or an upstream change shows quickly.
pub const TTL: u32 = 30;

/// Errors starting the DNS server.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("registering the DNS socket with the runtime (serve must run inside a tokio runtime)")]
    Register(#[source] std::io::Error),
}

/// What the resolver answers for one question (pure part of the handler).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// NOERROR with these IPv4 addresses (possibly none: NODATA).
    Addresses(Vec<std::net::Ipv4Addr>),
    /// NXDOMAIN: the name is allowed but does not resolve.
    NxDomain,
    /// NXDOMAIN: the policy does not allow the name.
    Refused,
}

/// The `rule` of a refused name in `egress.jsonl`.
pub const REFUSED_RULE: &str = "not in network.egress.allowedDomains";

/// Decides a question whose name is `name` (any case, trailing dot allowed).
pub async fn answer(
    policy: &PolicyHandle,
    resolver: &dyn Resolve,
    name: &str,
    qtype: RecordType,
) -> Answer {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name == INFERENCE_HOST {
        return Answer::Addresses(if qtype == RecordType::A {
            vec![std::net::Ipv4Addr::LOCALHOST]
        } else {
            vec![]
        });
    }
    if !policy.current().name_is_allowed(&name) {
        return Answer::Refused;
    }
    if qtype != RecordType::A {
        return Answer::Addresses(vec![]);
    }
    match resolver.lookup(&name).await {
        Ok(addrs) if !addrs.is_empty() => Answer::Addresses(
            addrs
                .into_iter()
                .filter_map(|a| match a {
                    IpAddr::V4(v4) => Some(v4),
                    IpAddr::V6(_) => None,
                })
                .collect(),
        ),
        _ => Answer::NxDomain,
    }
}

fn failed(req: &Header) -> ResponseInfo {
    let mut h = Header::response_from_request(req);
    h.set_response_code(ResponseCode::ServFail);
    h.into()
}

/// The hickory request handler: the sandbox's policy, resolver and egress log.
pub struct Handler {
    pub egress: Arc<Egress>,
    refusals: std::sync::Mutex<Refusals>,
}

/// How long a refused name stays logged once (per name), and the span of the overall cap.
pub const REFUSAL_LOG_WINDOW: Duration = Duration::from_secs(10);
/// At most this many refusal lines per window, whatever the names: a flood of made-up names
/// (data smuggled in labels) cannot fill the disk. What is held back is counted in one line.
pub const REFUSAL_LINES_PER_WINDOW: u32 = 200;
/// At most this many names are remembered; past it the memory is cleared.
const REFUSALS_REMEMBERED: usize = 4096;

/// What has been logged lately.
#[derive(Debug, Default)]
struct Refusals {
    last: std::collections::HashMap<String, std::time::Instant>,
    window_start: Option<std::time::Instant>,
    lines: u32,
    held_back: u64,
}

impl Handler {
    pub fn new(egress: Arc<Egress>) -> Handler {
        Handler {
            egress,
            refusals: Default::default(),
        }
    }

    /// Logs a refusal of `host` unless the same name was logged within the window or the
    /// window's cap is reached (counted, and said in one line when the next window opens).
    fn audit_refusal(&self, host: &str) {
        let lines = {
            let now = std::time::Instant::now();
            // Poisoned or not, the memory is usable: it only steers which refusals are logged
            // (a half-done update logs a line more or less), never what is answered.
            let mut r = crate::sync::lock(&self.refusals);
            let mut lines = Vec::new();
            if r.window_start
                .is_none_or(|t| now.duration_since(t) >= REFUSAL_LOG_WINDOW)
            {
                if r.held_back > 0 {
                    lines.push((
                        "*".to_string(),
                        format!(
                            "{REFUSED_RULE} ({} more refusals not logged: over {REFUSAL_LINES_PER_WINDOW} in {}s)",
                            r.held_back,
                            REFUSAL_LOG_WINDOW.as_secs()
                        ),
                    ));
                }
                r.window_start = Some(now);
                r.lines = 0;
                r.held_back = 0;
            }
            let recent = r
                .last
                .get(host)
                .is_some_and(|t| now.duration_since(*t) < REFUSAL_LOG_WINDOW);
            if !recent {
                if r.lines >= REFUSAL_LINES_PER_WINDOW {
                    r.held_back += 1;
                } else {
                    r.lines += 1;
                    if r.last.len() >= REFUSALS_REMEMBERED {
                        r.last.clear();
                    }
                    r.last.insert(host.to_string(), now);
                    lines.push((host.to_string(), REFUSED_RULE.to_string()));
                }
            }
            lines
        };
        let e = &self.egress;
        for (host, rule) in lines {
            e.log.write(&EgressRecord::new(
                &e.sandbox, "dns", &host, 53, false, &rule,
            ));
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let mut header = Header::response_from_request(request.header());
        header.set_recursion_available(true);
        let info = match request.request_info() {
            Ok(i) => i,
            Err(_) => {
                let msg = builder.error_msg(request.header(), ResponseCode::FormErr);
                return response
                    .send_response(msg)
                    .await
                    .unwrap_or_else(|_| failed(request.header()));
            }
        };
        let qname: Name = info.query.name().into();
        let qtype = info.query.query_type();
        let name = qname.to_ascii();
        let e = &self.egress;
        let records: Vec<Record> = match answer(&e.policy, e.resolver.as_ref(), &name, qtype).await
        {
            Answer::Refused => {
                self.audit_refusal(&name.trim_end_matches('.').to_ascii_lowercase());
                header.set_response_code(ResponseCode::NXDomain);
                vec![]
            }
            Answer::NxDomain => {
                header.set_response_code(ResponseCode::NXDomain);
                vec![]
            }
            Answer::Addresses(a) => a
                .into_iter()
                .map(|ip| Record::from_rdata(qname.clone(), TTL, RData::A(A(ip))))
                .collect(),
        };
        let msg = builder.build(header, records.iter(), &[], &[], &[]);
        response
            .send_response(msg)
            .await
            .unwrap_or_else(|_| failed(request.header()))
    }
}

/// A running DNS server; dropping it stops it.
pub struct DnsServing {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DnsServing {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves DNS on the given sockets (usually the ones `bind_gateway` planted in the sandbox),
/// deciding with `egress`'s policy and resolver and logging refusals to its log.
pub fn serve(
    udp: std::net::UdpSocket,
    tcp: Option<std::net::TcpListener>,
    egress: Arc<Egress>,
) -> Result<DnsServing, DnsError> {
    let mut server = ServerFuture::new(Handler::new(egress));
    server
        .register_socket_std(udp)
        .map_err(DnsError::Register)?;
    if let Some(t) = tcp {
        server
            .register_listener_std(t, Duration::from_secs(5))
            .map_err(DnsError::Register)?;
    }
    let task = tokio::spawn(async move {
        if let Err(e) = server.block_until_done().await {
            tracing::warn!(error = %e, "dns server stopped");
        }
    });
    Ok(DnsServing { task })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blueprint::types::{DomainRule, Egress, Network};
    use crate::gateway::egress::StaticResolver;
    use crate::policy::NetworkPolicy;

    fn handle(domains: &[&str]) -> PolicyHandle {
        let net = Network {
            egress: Egress {
                allowed_domains: domains
                    .iter()
                    .map(|d| DomainRule::Name((*d).into()))
                    .collect(),
                ..Egress::default()
            },
            ..Network::default()
        };
        PolicyHandle::new(NetworkPolicy::compile(&net, None).unwrap())
    }

    #[test]
    fn refusals_are_logged_once_per_name_and_capped_per_window() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        let log = crate::gateway::egress::EgressLog::open(&path).unwrap();
        let no_names: [(&str, IpAddr); 0] = [];
        let egress = crate::gateway::egress::Egress::new(
            "t",
            handle(&["ok.example"]),
            Arc::new(StaticResolver::new(no_names)),
            log,
        );
        let h = Handler::new(Arc::new(egress));
        let lines = || -> Vec<serde_json::Value> {
            std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        h.audit_refusal("evil.example");
        h.audit_refusal("evil.example");
        h.audit_refusal("other.example");
        let l = lines();
        assert_eq!(
            l.len(),
            2,
            "a repeat within the window is not logged: {l:?}"
        );
        assert_eq!(l[0]["host"], "evil.example");
        assert_eq!(l[0]["mode"], "dns");
        assert_eq!(l[0]["decision"], "deny");
        // A flood of made-up names: capped.
        for i in 0..1000 {
            h.audit_refusal(&format!("chunk{i}.exfil.example"));
        }
        assert_eq!(lines().len(), REFUSAL_LINES_PER_WINDOW as usize);
        // The next window says how many were held back.
        h.refusals.lock().unwrap().window_start =
            Some(std::time::Instant::now() - REFUSAL_LOG_WINDOW);
        h.audit_refusal("late.example");
        let l = lines();
        let summary = &l[REFUSAL_LINES_PER_WINDOW as usize];
        assert_eq!(summary["host"], "*");
        assert!(
            summary["rule"]
                .as_str()
                .unwrap()
                .contains("802 more refusals not logged"),
            "{summary}"
        );
        assert_eq!(l.last().unwrap()["host"], "late.example");
        assert!(h.refusals.lock().unwrap().last.len() <= REFUSALS_REMEMBERED);
    }

    #[tokio::test]
    async fn answers() {
        let p = handle(&["api.test.example", "*.wild.example"]);
        let r = StaticResolver::new([
            ("api.test.example", "198.18.0.2".parse().unwrap()),
            ("x.wild.example", "198.18.0.3".parse().unwrap()),
            ("evil.example", "198.18.0.4".parse().unwrap()),
        ]);
        let a = |n: &'static str, t| {
            let (p, r) = (p.clone(), r.clone());
            async move { answer(&p, &r, n, t).await }
        };
        assert_eq!(
            a("API.test.example.", RecordType::A).await,
            Answer::Addresses(vec!["198.18.0.2".parse().unwrap()])
        );
        assert_eq!(
            a("api.test.example", RecordType::AAAA).await,
            Answer::Addresses(vec![])
        );
        assert_eq!(
            a("x.wild.example", RecordType::A).await,
            Answer::Addresses(vec!["198.18.0.3".parse().unwrap()])
        );
        assert_eq!(a("evil.example", RecordType::A).await, Answer::Refused);
        assert_eq!(a("evil.example", RecordType::AAAA).await, Answer::Refused);
        assert_eq!(
            a("y.wild.example", RecordType::A).await,
            Answer::NxDomain,
            "allowed but unresolvable"
        );
        assert_eq!(
            a("inference.local", RecordType::A).await,
            Answer::Addresses(vec![std::net::Ipv4Addr::LOCALHOST])
        );
        assert_eq!(
            a("inference.local", RecordType::AAAA).await,
            Answer::Addresses(vec![])
        );
    }
}
