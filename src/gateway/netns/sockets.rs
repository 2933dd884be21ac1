//! The effectful shell around the sealed network namespace: running code inside a netns,
//! building its links with netlink, applying the fence, and planting sockets in it.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use futures_util::TryStreamExt;
use nix::sched::{setns, CloneFlags};
use rtnetlink::packet_route::route::RouteScope;
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};
use socket2::{Domain, Protocol, Socket, Type};

use super::nft::{render, GatewayPorts};
use super::NetError;
use crate::policy::NetworkPolicy;

/// The veth end that carries the sandbox's address and default route.
pub const INNER_LINK: &str = "nc0";
/// Its peer, also inside the sandbox netns (it exists only so the route has a live link).
pub const PEER_LINK: &str = "nc1";
/// The sandbox's own address (TEST-NET-1: never routed anywhere).
pub const INNER_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

/// The veth MTU (the largest a veth takes).
pub const VETH_MTU: u32 = 65535;

/// Runs `f` on a short-lived thread that has joined `netns`. Sockets that `f` creates stay in
/// that netns; processes it spawns start there. The calling thread is never moved.
pub fn in_netns<T, F>(netns: BorrowedFd<'_>, f: F) -> Result<T, NetError>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    let fd: OwnedFd = netns
        .try_clone_to_owned()
        .map_err(|e| NetError::Io("duplicating the netns fd", e))?;
    std::thread::scope(|s| {
        s.spawn(move || {
            setns(fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| NetError::Setns(e.into()))?;
            Ok(f())
        })
        .join()
        .map_err(|_| NetError::Thread)?
    })
}

/// Seals a fresh netns: `lo` up, a veth pair with both ends inside, the inner end with
/// 192.0.2.2/32 and an IPv4 default route through it (no IPv6 route), then the nftables fence
/// for `policy`. Nothing the agent sends can leave the namespace except through the gateway's
/// sockets planted with [`bind_gateway`].
pub fn setup_sealed(
    netns: BorrowedFd<'_>,
    policy: &NetworkPolicy,
    ports: &GatewayPorts,
) -> Result<(), NetError> {
    in_netns(netns, || -> Result<(), NetError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| NetError::Io("starting the netlink runtime", e))?;
        rt.block_on(build_links())
    })??;
    apply_fence(netns, policy, ports)
}

async fn build_links() -> Result<(), NetError> {
    let (conn, handle, _) =
        rtnetlink::new_connection().map_err(|e| NetError::Io("opening a netlink socket", e))?;
    let task = tokio::spawn(conn);
    let result = build_links_with(&handle).await;
    task.abort();
    result
}

async fn build_links_with(h: &Handle) -> Result<(), NetError> {
    let nl = |what: &str| {
        let what = what.to_string();
        move |e: rtnetlink::Error| NetError::Netlink(what.clone(), e)
    };
    let lo = link_index(h, "lo").await?;
    h.link()
        .set(LinkUnspec::new_with_index(lo).up().build())
        .execute()
        .await
        .map_err(nl("bringing lo up"))?;
    h.link()
        .add(LinkVeth::new(INNER_LINK, PEER_LINK).build())
        .execute()
        .await
        .map_err(nl("creating the inner veth pair"))?;
    let inner = link_index(h, INNER_LINK).await?;
    let peer = link_index(h, PEER_LINK).await?;
    h.address()
        .add(inner, INNER_ADDR.into(), 32)
        .execute()
        .await
        .map_err(nl("adding 192.0.2.2/32 to the inner veth"))?;
    // Nothing ever leaves through the veth (all TCP is redirected to loopback sockets), so give
    // it loopback's large MTU: the MSS that agents advertise follows the route's MTU, and 1500
    // would cut the gateway's sends to the agent into small segments.
    for idx in [peer, inner] {
        h.link()
            .set(LinkUnspec::new_with_index(idx).mtu(VETH_MTU).up().build())
            .execute()
            .await
            .map_err(nl("bringing the veth up"))?;
    }
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .output_interface(inner)
        .scope(RouteScope::Link)
        .build();
    h.route()
        .add(route)
        .execute()
        .await
        .map_err(nl("adding the default route"))?;
    Ok(())
}

async fn link_index(h: &Handle, name: &str) -> Result<u32, NetError> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(l.header.index),
        Ok(None) => Err(NetError::NoLink(name.to_string())),
        Err(e) => Err(NetError::Netlink(format!("finding link {name}"), e)),
    }
}

/// Applies (or on reload, atomically replaces) the fence for `policy` inside `netns`.
pub fn apply_fence(
    netns: BorrowedFd<'_>,
    policy: &NetworkPolicy,
    ports: &GatewayPorts,
) -> Result<(), NetError> {
    let batch = render(policy, ports).to_nftables();
    in_netns(netns, || nftables::helper::apply_ruleset(&batch))?.map_err(NetError::Nft)
}

/// The gateway's listening sockets, created inside the sandbox netns and served from the
/// supervisor's runtime. All are non-blocking, ready for `tokio::net::*::from_std`.
#[derive(Debug)]
pub struct GatewaySockets {
    pub proxy: TcpListener,
    pub transparent: TcpListener,
    /// `None` with `dns.resolver: none`.
    pub dns_udp: Option<UdpSocket>,
    pub dns_tcp: Option<TcpListener>,
    /// 127.0.0.1:80 for `inference.local`, when asked for.
    pub inference: Option<TcpListener>,
}

/// Binds the gateway's sockets on 127.0.0.1 inside `netns`.
pub fn bind_gateway(
    netns: BorrowedFd<'_>,
    ports: &GatewayPorts,
    dns: bool,
    inference: bool,
) -> Result<GatewaySockets, NetError> {
    in_netns(netns, || -> Result<GatewaySockets, NetError> {
        let at = |p: u16| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, p));
        Ok(GatewaySockets {
            proxy: tcp_listener(at(ports.proxy))?,
            transparent: tcp_listener(at(ports.transparent))?,
            dns_udp: if dns {
                Some(udp_socket(at(ports.dns))?)
            } else {
                None
            },
            dns_tcp: if dns {
                Some(tcp_listener(at(ports.dns))?)
            } else {
                None
            },
            inference: if inference {
                Some(tcp_listener(at(ports.inference))?)
            } else {
                None
            },
        })
    })?
}

/// Binds TCP listeners on `addrs` inside `netns` (non-blocking).
pub fn bind_tcp_in_netns(
    netns: BorrowedFd<'_>,
    addrs: &[SocketAddr],
) -> Result<Vec<TcpListener>, NetError> {
    in_netns(netns, || addrs.iter().map(|a| tcp_listener(*a)).collect())?
}

/// An unconnected, non-blocking TCP socket created inside `netns`: connecting it reaches
/// addresses as seen from inside the sandbox (used by ingress).
pub fn tcp_socket_in_netns(netns: BorrowedFd<'_>) -> Result<Socket, NetError> {
    in_netns(netns, || -> Result<Socket, NetError> {
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
            .map_err(|e| NetError::Io("creating a socket", e))?;
        s.set_nonblocking(true)
            .map_err(|e| NetError::Io("setting O_NONBLOCK", e))?;
        Ok(s)
    })?
}

fn tcp_listener(addr: SocketAddr) -> Result<TcpListener, NetError> {
    let io = |e| NetError::Bind(addr, e);
    let s =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(io)?;
    s.set_reuse_address(true).map_err(io)?;
    s.bind(&addr.into()).map_err(io)?;
    s.listen(1024).map_err(io)?;
    s.set_nonblocking(true).map_err(io)?;
    Ok(s.into())
}

fn udp_socket(addr: SocketAddr) -> Result<UdpSocket, NetError> {
    let io = |e| NetError::Bind(addr, e);
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(io)?;
    s.bind(&addr.into()).map_err(io)?;
    s.set_nonblocking(true).map_err(io)?;
    Ok(s.into())
}
