//! Ingress: a host loopback port forwarded to a port inside the sandbox (an agent's
//! dashboard). Each connection is dialled from a socket created inside the sandbox netns, so
//! nothing but these forwards reaches in and the sandbox needs no host-side link.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::accept;
use super::relay::relay_pipelined;
use super::{EgressLog, EgressRecord, Serving};
use crate::gateway::netns::{tcp_socket_in_netns, NetError};
use crate::policy::network::IngressRule;

/// Listens on 127.0.0.1:`host_port` (in the caller's namespace) for every rule and forwards
/// each connection to 127.0.0.1:`port` inside `netns`. Must run inside a tokio runtime.
pub async fn serve_ingress(
    netns: OwnedFd,
    rules: &[IngressRule],
    sandbox: &str,
    log: EgressLog,
) -> Result<Serving, IngressError> {
    let netns = Arc::new(netns);
    let mut serving = Serving::default();
    for r in rules {
        let at = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, r.host_port));
        let listener = bind_retrying(at)
            .await
            .map_err(|e| IngressError::Bind(r.host_port, e))?;
        let (netns, rule, sandbox, log) = (netns.clone(), *r, sandbox.to_string(), log.clone());
        serving.push(tokio::spawn(accept::serve(
            listener,
            "ingress",
            move |client| {
                let (netns, sandbox, log) = (netns.clone(), sandbox.clone(), log.clone());
                async move { forward(client, &netns, rule, &sandbox, &log).await }
            },
        )));
    }
    Ok(serving)
}

/// Binds, retrying for a second while the port is still held by a previous sandbox's forward
/// (its accept loop is cancelled asynchronously on restart).
async fn bind_retrying(at: SocketAddr) -> std::io::Result<TcpListener> {
    let mut tries = 0;
    loop {
        match TcpListener::bind(at).await {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 20 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// Opens a TCP connection to `port` on the sandbox's loopback, from inside its netns.
pub async fn dial_inside(netns: &OwnedFd, port: u16) -> Result<TcpStream, IngressError> {
    let sock = tcp_socket_in_netns(netns.as_fd()).map_err(IngressError::Netns)?;
    let std_stream: std::net::TcpStream = sock.into();
    let sock = TcpSocket::from_std_stream(std_stream);
    let s = sock
        .connect(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)))
        .await
        .map_err(|e| IngressError::Connect(port, e))?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

async fn forward(
    client: TcpStream,
    netns: &OwnedFd,
    rule: IngressRule,
    sandbox: &str,
    log: &EgressLog,
) {
    let started = Instant::now();
    let mut rec = EgressRecord::new(
        sandbox,
        "ingress",
        "127.0.0.1",
        rule.port,
        true,
        &format!("network.ingress {} -> {}", rule.host_port, rule.port),
    );
    let _ = client.set_nodelay(true);
    match dial_inside(netns, rule.port).await {
        Ok(inner) => {
            let (moved, err) = relay_pipelined(client, inner).await;
            rec.bytes_out = moved.in_;
            rec.bytes_in = moved.out;
            rec.error = err.map(|e| e.to_string());
        }
        Err(e) => rec.error = Some(crate::error_chain(&e)),
    }
    log.write(&rec.took(started.elapsed()));
}

/// Errors forwarding ingress.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("binding 127.0.0.1:{0} on the host for network.ingress (is the port already in use?)")]
    Bind(u16, #[source] std::io::Error),
    #[error("creating a socket inside the sandbox netns")]
    Netns(#[source] NetError),
    #[error("connecting to port {0} inside the sandbox (is the agent listening on 127.0.0.1:{0} or 0.0.0.0:{0}?)")]
    Connect(u16, #[source] std::io::Error),
}
