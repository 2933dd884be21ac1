//! [`SandboxGateway`]: everything network for one sandbox, which the supervisor plugs in as the
//! sandbox runtime's network hook. It owns a small tokio runtime (its threads live in the supervisor's
//! namespace, so upstream connections leave from there); each [`SandboxGateway::attach`] seals the new netns,
//! plants the gateway's sockets in it and serves them (a restarted agent gets a new netns and
//! the previous one's sockets are dropped); [`SandboxGateway::reload`] applies a new policy to
//! the running sandbox without restarting anything.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use tokio::runtime::Runtime;

use super::ingress::{serve_ingress, IngressError};
use super::{serve, Egress, EgressError, EgressLog, Listeners, Resolve, Serving};
use crate::gateway::dns::{self, DnsServing};
use crate::gateway::netns::{self as net, GatewayPorts, NetError};
use crate::policy::types::DnsResolver;
use crate::policy::{NetworkPolicy, PolicyHandle};

/// Why the gateway could not be attached to a new sandbox netns (the start is aborted).
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(transparent)]
    Netns(#[from] NetError),
    #[error("duplicating the netns fd")]
    DupNetns(#[source] std::io::Error),
    #[error(transparent)]
    Egress(#[from] EgressError),
    #[error(transparent)]
    Dns(#[from] dns::DnsError),
    #[error(transparent)]
    Ingress(#[from] IngressError),
}

/// What is attached to the current sandbox netns.
struct Attached {
    netns: OwnedFd,
    _egress: Serving,
    _dns: Option<DnsServing>,
    _ingress: Serving,
}

/// The network side of one sandbox: sealed netns, fence, egress proxy, DNS and ingress.
pub struct SandboxGateway {
    rt: Runtime,
    egress: Arc<Egress>,
    ports: GatewayPorts,
    /// Plant a listener on 127.0.0.1:`ports.inference` for the inference gateway.
    inference: bool,
    inference_listener: Option<std::net::TcpListener>,
    current: Option<Attached>,
}

impl SandboxGateway {
    /// `log_dir` is the sandbox's `logs/<name>/` (egress.jsonl goes there); `resolver` is the
    /// upstream resolution (`SystemResolver` in production).
    pub fn new(
        name: &str,
        policy: NetworkPolicy,
        log_dir: &Path,
        resolver: Arc<dyn Resolve>,
        inference: bool,
    ) -> Result<SandboxGateway, EgressError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("nemoclaw-gateway")
            .enable_all()
            .build()
            .map_err(EgressError::Register)?;
        let path = log_dir.join(crate::home::EGRESS_LOG);
        let log = EgressLog::open(&path).map_err(|source| EgressError::Log { path, source })?;
        let egress = Arc::new(Egress::new(name, PolicyHandle::new(policy), resolver, log));
        Ok(SandboxGateway {
            rt,
            egress,
            ports: GatewayPorts::default(),
            inference,
            inference_listener: None,
            current: None,
        })
    }

    /// The policy handle the gateway reads (shared with DNS).
    pub fn policy(&self) -> &PolicyHandle {
        &self.egress.policy
    }

    /// The runtime serving the gateway (the inference gateway may share it).
    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    /// The proxy variables to add to the agent's environment.
    pub fn agent_env(&self) -> Vec<(String, String)> {
        net::agent_env(&self.ports)
    }

    /// The 127.0.0.1:80 listener planted for `inference.local` at the last setup.
    pub fn take_inference_listener(&mut self) -> Option<std::net::TcpListener> {
        self.inference_listener.take()
    }

    /// Applies `policy` to the running sandbox: the fence is replaced atomically, new
    /// connections and DNS queries follow at once; nothing restarts. (A change of
    /// `dns.resolver` or `ingress` takes effect at the next start.)
    pub fn reload(&self, policy: NetworkPolicy) -> Result<(), NetError> {
        match &self.current {
            Some(a) => net::reload(a.netns.as_fd(), &self.egress.policy, policy, &self.ports),
            None => {
                self.egress.policy.reload(policy);
                Ok(())
            }
        }
    }

    /// Drops the current sandbox's sockets, forwards and netns reference (call when the agent
    /// stops and is not restarted).
    pub fn detach(&mut self) {
        self.current = None;
        self.inference_listener = None;
    }

    /// Seals the sandbox's new netns, plants the gateway's sockets in it and serves them.
    pub fn attach(&mut self, netns: BorrowedFd<'_>) -> Result<(), AttachError> {
        self.current = None; // the previous sandbox's sockets and forwards
        let policy = self.egress.policy.current();
        net::setup_sealed(netns, &policy, &self.ports)?;
        let dns_on = policy.dns == DnsResolver::Host;
        let socks = net::bind_gateway(netns, &self.ports, dns_on, self.inference)?;
        self.inference_listener = socks.inference;
        let owned = netns.try_clone_to_owned().map_err(AttachError::DupNetns)?;
        let _g = self.rt.enter();
        let egress = serve(
            Listeners {
                proxy: Some(socks.proxy),
                transparent: Some(socks.transparent),
            },
            self.egress.clone(),
        )?;
        let dns = match socks.dns_udp {
            Some(udp) => Some(dns::serve(udp, socks.dns_tcp, self.egress.clone())?),
            None => None,
        };
        let ingress_ns = owned.try_clone().map_err(AttachError::DupNetns)?;
        let ingress = self.rt.block_on(serve_ingress(
            ingress_ns,
            &policy.ingress,
            &self.egress.sandbox,
            self.egress.log.clone(),
        ))?;
        self.current = Some(Attached {
            netns: owned,
            _egress: egress,
            _dns: dns,
            _ingress: ingress,
        });
        Ok(())
    }
}
