//! The transparent listener: every TCP connection the fence redirects lands here. The original
//! destination comes from `SO_ORIGINAL_DST`, the name from the TLS SNI or the HTTP Host; the
//! gateway then dials its own resolution of that name on the original port, never the
//! address the agent was connecting to (a spoofed SNI must not reach an arbitrary address).
//! Denied HTTP gets the 403 JSON; denied TLS and other protocols get a closed connection.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Instant;

use nix::sys::socket::{getsockopt, sockopt::OriginalDst};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::relay::relay_pipelined;
use super::sniff::{sniff, Sniff, MAX_SNIFF};
use super::{Egress, Outcome};

pub(crate) async fn accept_loop(listener: TcpListener, egress: Arc<Egress>) {
    let own = listener.local_addr().ok();
    super::accept::serve(listener, "transparent", move |stream| {
        let _ = stream.set_nodelay(true);
        handle(stream, own, egress.clone())
    })
    .await
}

/// The destination the agent connected to before the fence redirected it.
pub fn original_dst(stream: &TcpStream) -> std::io::Result<SocketAddr> {
    let sa = getsockopt(&stream.as_fd(), OriginalDst)?;
    let ip = Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr));
    Ok(SocketAddr::V4(SocketAddrV4::new(
        ip,
        u16::from_be(sa.sin_port),
    )))
}

/// Reads until the first bytes tell a name (or not), within the sniff timeout.
async fn read_head(stream: &mut TcpStream, egress: &Egress) -> (Vec<u8>, Sniff) {
    let mut buf = Vec::with_capacity(4096);
    let deadline = tokio::time::Instant::now() + egress.sniff_timeout;
    loop {
        let mut chunk = [0u8; 4096];
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) | Err(_) => 0,
        };
        if n == 0 {
            let s = match sniff(&buf) {
                Sniff::NeedMore => Sniff::Other,
                s => s,
            };
            return (buf, s);
        }
        buf.extend_from_slice(&chunk[..n]);
        match sniff(&buf) {
            Sniff::NeedMore if buf.len() < MAX_SNIFF => continue,
            Sniff::NeedMore => return (buf, Sniff::Other),
            s => return (buf, s),
        }
    }
}

async fn handle(mut stream: TcpStream, own: Option<SocketAddr>, egress: Arc<Egress>) {
    let started = Instant::now();
    let orig = match original_dst(&stream) {
        Ok(a) if Some(a) != own => a,
        _ => return, // not redirected (an agent dialling the listener itself): nothing to do
    };
    // An explicit address rule for the original destination needs no name: dial at once
    // (server-speaks-first protocols would otherwise wait out the sniff timeout).
    let (head, sniffed, outcome) = match egress.decide_address(orig) {
        allowed @ Outcome::Allow(..) => (Vec::new(), Sniff::Other, allowed),
        _ => {
            let (head, sniffed) = read_head(&mut stream, &egress).await;
            let outcome = match &sniffed {
                Sniff::Tls(Some(n)) | Sniff::Http(Some(n)) => egress.decide(n, orig.port()).await,
                _ => egress.decide_address(orig),
            };
            (head, sniffed, outcome)
        }
    };
    let is_http = matches!(sniffed, Sniff::Http(_));
    let (d, addr) = match outcome {
        Outcome::Allow(d, addr) => (d, addr),
        Outcome::Deny(d) => {
            let mut rec = egress.record("transparent", &d).took(started.elapsed());
            rec.addr = None;
            egress.log.write(&rec);
            if is_http {
                let body = d.denial_body();
                let resp = format!(
                    "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(resp.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
            return;
        }
        Outcome::Unresolved(d, why) => {
            let mut rec = egress.record("transparent", &d).took(started.elapsed());
            rec.error = Some(why);
            egress.log.write(&rec);
            return;
        }
    };
    let mut rec = egress.record("transparent", &d);
    rec.addr = Some(addr.to_string());
    let mut upstream = match egress.dial(addr).await {
        Ok(s) => s,
        Err(e) => {
            rec.error = Some(e.to_string());
            egress.log.write(&rec.took(started.elapsed()));
            return;
        }
    };
    if let Err(e) = upstream.write_all(&head).await {
        rec.error = Some(e.to_string());
        egress.log.write(&rec.took(started.elapsed()));
        return;
    }
    let (moved, err) = relay_pipelined(stream, upstream).await;
    rec.bytes_out = moved.out + head.len() as u64;
    rec.bytes_in = moved.in_;
    rec.error = err.map(|e| e.to_string());
    egress.log.write(&rec.took(started.elapsed()));
}
