//! The egress gateway: the agent's only way out of its sealed network namespace.
//!
//! Its listening sockets live inside the sandbox netns (planted by
//! [`crate::gateway::netns::bind_gateway`]); it decides every connection with the sandbox's
//! [`NetworkPolicy`] and dials upstream from its own (the host's) namespace.
//! - [`explicit`]: the `HTTP_PROXY` / `HTTPS_PROXY` proxy (CONNECT and absolute-form HTTP).
//! - [`transparent`]: every other TCP connection, redirected by the fence; the name comes from
//!   the TLS SNI or the HTTP Host, and the gateway dials its own resolution of that name.
//! - [`ingress`]: host loopback ports forwarded to ports inside the sandbox.
//! - [`attach`]: [`SandboxGateway`], all of the above for one sandbox netns at a time.
//! - [`accept`]: the accept loop every gateway listener runs.
//! - [`relay`]: pipelined large-buffer byte moving; [`sniff`]: SNI / Host parsing; [`resolve`]: the
//!   injectable upstream resolver; [`log`]: `egress.jsonl`.

pub mod accept;
pub mod attach;
pub mod explicit;
pub mod ingress;
pub mod log;
pub mod relay;
pub mod resolve;
pub mod sniff;
pub mod transparent;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::task::JoinHandle;

pub use attach::{AttachError, SandboxGateway};
pub use log::{EgressLog, EgressRecord};
pub use resolve::{Resolve, StaticResolver, SystemResolver};

use crate::policy::{Decision, PolicyHandle};

/// Errors starting the gateway's listeners.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error(
        "registering a gateway socket with the runtime (serve must run inside a tokio runtime)"
    )]
    Register(#[source] std::io::Error),
    #[error("opening the egress log {}", path.display())]
    Log {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Everything a connection handler needs; shared by all listeners of one sandbox.
pub struct Egress {
    pub sandbox: String,
    pub policy: PolicyHandle,
    pub resolver: Arc<dyn Resolve>,
    pub log: EgressLog,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// How long a transparent connection may stay silent before it is judged nameless.
    pub sniff_timeout: Duration,
}

impl Egress {
    pub fn new(
        sandbox: &str,
        policy: PolicyHandle,
        resolver: Arc<dyn Resolve>,
        log: EgressLog,
    ) -> Egress {
        Egress {
            sandbox: sandbox.to_string(),
            policy,
            resolver,
            log,
            connect_timeout: Duration::from_secs(10),
            sniff_timeout: Duration::from_secs(3),
        }
    }
}

/// The result of deciding a destination.
#[derive(Debug)]
pub enum Outcome {
    /// Allowed: dial exactly `addr` (the checked resolution, never an address the agent gave).
    Allow(Decision, SocketAddr),
    /// Refused by policy.
    Deny(Decision),
    /// Allowed, but the name has no address.
    Unresolved(Decision, String),
}

impl Egress {
    /// Decides `host:port`, resolving the name itself and applying the SSRF guard.
    pub async fn decide(&self, host: &str, port: u16) -> Outcome {
        let policy = self.policy.current();
        let d = policy.decide_name(host, port);
        if !d.allowed {
            return Outcome::Deny(d);
        }
        if let Ok(ip) = d.host.trim_matches(['[', ']']).parse::<IpAddr>() {
            // Only an allowAddresses entry with this port admits an address literal.
            return Outcome::Allow(d, SocketAddr::new(ip, port));
        }
        let addrs = match self.resolver.lookup(&d.host).await {
            Ok(a) if !a.is_empty() => a,
            Ok(_) => return Outcome::Unresolved(d, "the name has no IPv4 address".into()),
            Err(e) => return Outcome::Unresolved(d, e.to_string()),
        };
        match policy.choose_address(&addrs) {
            Ok(ip) => Outcome::Allow(d, SocketAddr::new(ip, port)),
            Err(why) => Outcome::Deny(Decision::deny(
                &d.host,
                port,
                &format!("SSRF guard: {why}"),
                "the name must resolve to a public address; if this range is intended, list it in network.egress.allowAddresses".into(),
            )),
        }
    }

    /// Decides a connection that carries no name, by its original destination.
    pub fn decide_address(&self, dst: SocketAddr) -> Outcome {
        let d = self.policy.current().decide_address(dst.ip(), dst.port());
        if d.allowed {
            Outcome::Allow(d, dst)
        } else {
            Outcome::Deny(d)
        }
    }

    /// Connects upstream with the configured timeout, Nagle off.
    pub async fn dial(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        let s = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting to {addr} timed out"),
                )
            })??;
        s.set_nodelay(true)?;
        Ok(s)
    }

    pub(crate) fn record(&self, mode: &'static str, d: &Decision) -> EgressRecord {
        EgressRecord::new(&self.sandbox, mode, &d.host, d.port, d.allowed, &d.rule)
    }
}

/// The gateway's listening sockets (std, non-blocking, usually from `bind_gateway`).
#[derive(Debug, Default)]
pub struct Listeners {
    pub proxy: Option<std::net::TcpListener>,
    pub transparent: Option<std::net::TcpListener>,
}

/// Running accept loops; dropping it stops accepting (open connections finish on their own).
#[derive(Debug, Default)]
pub struct Serving {
    tasks: Vec<JoinHandle<()>>,
}

impl Serving {
    pub fn push(&mut self, t: JoinHandle<()>) {
        self.tasks.push(t);
    }

    pub fn extend(&mut self, other: Serving) {
        let mut other = other;
        self.tasks.append(&mut other.tasks);
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Serves the explicit proxy and the transparent listener on the current tokio runtime.
/// Reload by calling `egress.policy.reload(...)`: new connections follow at once.
pub fn serve(listeners: Listeners, egress: Arc<Egress>) -> Result<Serving, EgressError> {
    let mut serving = Serving::default();
    if let Some(l) = listeners.proxy {
        let l = tokio::net::TcpListener::from_std(l).map_err(EgressError::Register)?;
        serving.push(tokio::spawn(explicit::accept_loop(l, egress.clone())));
    }
    if let Some(l) = listeners.transparent {
        let l = tokio::net::TcpListener::from_std(l).map_err(EgressError::Register)?;
        serving.push(tokio::spawn(transparent::accept_loop(l, egress)));
    }
    Ok(serving)
}
