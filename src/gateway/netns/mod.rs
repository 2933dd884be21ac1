//! The sealed network namespace of a sandbox, as the gateway holds it: the only way out of the
//! sandbox is through the gateway's sockets planted in it.
//!
//! - [`nft`] (pure): the nftables fence as data, rendered from a
//!   [`NetworkPolicy`](crate::policy::NetworkPolicy).
//! - [`sockets`]: the effectful shell: links by netlink, the fence applied with `nft`, and the
//!   gateway's sockets planted inside the netns by a thread that `setns`es in.
//!
//! Integration (the supervisor, once the sandbox's netns exists and before the agent execs):
//! `setup_sealed(netns, &policy, &ports)`, then `bind_gateway(netns, ...)`, then serve the
//! sockets with `gateway::egress::serve` and `gateway::dns::serve`; on a `network` change,
//! [`reload`].

pub mod nft;
pub mod sockets;

use std::os::fd::BorrowedFd;

pub use nft::GatewayPorts;
pub use sockets::{
    bind_gateway, bind_tcp_in_netns, in_netns, setup_sealed, tcp_socket_in_netns, GatewaySockets,
};

use crate::policy::{NetworkPolicy, PolicyHandle, INFERENCE_HOST};

/// Errors setting up or changing a sandbox's network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("joining the sandbox network namespace (setns; the supervisor needs CAP_SYS_ADMIN over that namespace)")]
    Setns(#[source] std::io::Error),
    #[error("a netns helper thread panicked")]
    Thread,
    #[error("{0}")]
    Io(&'static str, #[source] std::io::Error),
    #[error("netlink, {0}")]
    Netlink(String, #[source] rtnetlink::Error),
    #[error("netlink, finding link {0}: not found")]
    NoLink(String),
    #[error("applying the nftables fence (is the `nft` program installed and in PATH? Debian: apt-get install nftables)")]
    Nft(#[source] nftables::helper::NftablesError),
    #[error("binding {0} inside the sandbox netns")]
    Bind(std::net::SocketAddr, #[source] std::io::Error),
}

/// The proxy variables the agent gets (`HTTP_PROXY`, `HTTPS_PROXY` in both cases, `NO_PROXY`).
/// Programs that ignore them still go through the gateway, transparently.
pub fn agent_env(ports: &GatewayPorts) -> Vec<(String, String)> {
    let proxy = format!("http://127.0.0.1:{}", ports.proxy);
    let no_proxy = format!("{},localhost,127.0.0.1", INFERENCE_HOST);
    let mut env = Vec::new();
    for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
        env.push((k.to_string(), proxy.clone()));
    }
    env.push(("NO_PROXY".into(), no_proxy.clone()));
    env.push(("no_proxy".into(), no_proxy));
    env
}

/// The sandbox's `/etc/resolv.conf`: the gateway's resolver on 127.0.0.1 (with
/// `dns.resolver: none` there is none, and the file says so). Queries aimed elsewhere are
/// redirected to the gateway anyway.
pub fn resolv_conf(policy: &NetworkPolicy) -> String {
    match policy.dns {
        crate::policy::types::DnsResolver::Host => {
            "nameserver 127.0.0.1\noptions edns0 trust-ad\n".into()
        }
        crate::policy::types::DnsResolver::None => {
            "# dns.resolver: none: this sandbox has no DNS\n".into()
        }
    }
}

/// Hot reload of a running sandbox: replaces the fence atomically (blocked ports, DNS), then
/// the gateway's policy. Nothing restarts; established connections keep flowing.
pub fn reload(
    netns: BorrowedFd<'_>,
    handle: &PolicyHandle,
    policy: NetworkPolicy,
    ports: &GatewayPorts,
) -> Result<(), NetError> {
    sockets::apply_fence(netns, &policy, ports)?;
    handle.reload(policy);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::types::Network;

    #[test]
    fn agent_env_and_resolv_conf() {
        let env = agent_env(&GatewayPorts::default());
        assert!(env.contains(&("HTTPS_PROXY".into(), "http://127.0.0.1:3128".into())));
        assert!(env.contains(&(
            "no_proxy".into(),
            "inference.local,localhost,127.0.0.1".into()
        )));
        let p = NetworkPolicy::compile(&Network::default(), None).unwrap();
        assert_eq!(resolv_conf(&p).lines().next(), Some("nameserver 127.0.0.1"));
    }
}
