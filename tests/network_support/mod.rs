//! A small, self-contained "internet" for the network tests and the egress benchmark.
//!
//! Every test builds a [`World`] of three network namespaces it creates and deletes itself:
//! - `gw`: where the gateway dials from (stands for the host's namespace); the test thread and
//!   the tokio runtime live in it;
//! - `inet`: the test hosts, 198.18.0.2-4/24 (the benchmarking range), with HTTP, HTTPS (a
//!   test CA made with rcgen), a TCP echo and a UDP echo; linked to `gw` by a veth pair
//!   (198.18.0.1 on the `gw` side);
//! - `sb`: the sandbox, sealed by the product code, with the gateway's sockets planted in it.
//!
//! Traffic never leaves these namespaces.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nemoclaw::blueprint::types::{DnsResolver, DomainRule, Egress as EgressSpec, Ingress, Network};
use nemoclaw::gateway::dns::{self, DnsServing};
use nemoclaw::gateway::egress::{self, Egress, EgressLog, Listeners, Serving, StaticResolver};
use nemoclaw::gateway::netns::{self as net, GatewayPorts};
use nemoclaw::policy::{NetworkPolicy, PolicyHandle};
use nix::sched::{setns, CloneFlags};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::runtime::Runtime;
use tokio_rustls::rustls;

pub const HOST_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const HOST_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
/// A test-host address with no DNS server: where the sandbox's resolv.conf points.
pub const OTHER_RESOLVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 4);
pub const ECHO_PORT: u16 = 7000;
pub const UDP_ECHO_PORT: u16 = 9999;

/// Names the gateway's (injected) upstream resolver knows.
pub fn test_names() -> Vec<(&'static str, IpAddr)> {
    vec![
        ("api.test.example", HOST_A.into()),
        ("x.wild.example", HOST_B.into()),
        ("wild.example", HOST_B.into()),
        ("other.example", HOST_A.into()),
        ("loop.example", Ipv4Addr::LOCALHOST.into()),
        ("meta.example", Ipv4Addr::new(169, 254, 169, 254).into()),
    ]
}

/// Fails loudly unless the tests can do what they need.
pub fn require_root_and_tools() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the network tests need root: they create network namespaces, veth pairs and nftables rules"
    );
    for tool in ["ip", "nft", "curl", "getent"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        assert!(found, "the network tests need `{tool}` in PATH (Debian: apt-get install iproute2 nftables curl)");
    }
}

/// Runs a command and insists on success.
pub fn sh(prog: &str, args: &[&str]) -> Output {
    let out = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {prog}: {e}"));
    assert!(
        out.status.success(),
        "{prog} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A named network namespace, deleted on drop (also when the test panics).
pub struct Ns {
    pub name: String,
    pub fd: OwnedFd,
}

impl Ns {
    pub fn create(name: &str) -> Ns {
        sh("ip", &["netns", "add", name]);
        let fd = std::fs::File::open(format!("/run/netns/{name}"))
            .expect("opening the netns")
            .into();
        Ns {
            name: name.to_string(),
            fd,
        }
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The policy a test asks for.
#[derive(Clone)]
pub struct Spec {
    pub domains: Vec<String>,
    pub blocked: Vec<u32>,
    pub allow: Vec<String>,
    pub dns: DnsResolver,
    pub ingress: Vec<(u32, u32)>,
}

impl Default for Spec {
    fn default() -> Spec {
        Spec {
            domains: vec![
                "api.test.example".into(),
                "*.wild.example".into(),
                "loop.example".into(),
                "meta.example".into(),
            ],
            blocked: vec![25],
            allow: vec!["198.18.0.0/15".into()],
            dns: DnsResolver::Host,
            ingress: vec![],
        }
    }
}

impl Spec {
    pub fn policy(&self) -> NetworkPolicy {
        let net = Network {
            egress: EgressSpec {
                allowed_domains: self
                    .domains
                    .iter()
                    .map(|d| DomainRule::Name(d.clone()))
                    .collect(),
                blocked_ports: self.blocked.clone(),
                presets: vec![],
                allow_addresses: self.allow.clone(),
            },
            dns: nemoclaw::blueprint::types::Dns { resolver: self.dns },
            ingress: self
                .ingress
                .iter()
                .map(|(h, p)| Ingress {
                    host_port: *h,
                    port: *p,
                })
                .collect(),
        };
        NetworkPolicy::compile(&net, None).expect("test policy compiles")
    }
}

pub struct World {
    pub sb: Ns,
    pub gw: Ns,
    pub inet: Ns,
    pub rt: Option<Runtime>,
    /// The test hosts' servers run on their own threads, as on another machine.
    hosts_rt: Option<Runtime>,
    pub policy: PolicyHandle,
    pub ports: GatewayPorts,
    pub dir: tempfile::TempDir,
    pub log_path: PathBuf,
    pub ca_path: PathBuf,
    pub egress: Arc<Egress>,
    serving: Vec<Serving>,
    dns: Option<DnsServing>,
    orig_ns: OwnedFd,
}

impl World {
    pub fn new(spec: Spec) -> World {
        require_root_and_tools();
        let id = format!(
            "{:x}{:x}",
            std::process::id() & 0xffff,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let orig_ns: OwnedFd = std::fs::File::open("/proc/thread-self/ns/net")
            .unwrap()
            .into();
        let gw = Ns::create(&format!("nct{id}gw"));
        let inet = Ns::create(&format!("nct{id}in"));
        let sb = Ns::create(&format!("nct{id}sb"));
        link_test_hosts(&gw, &inet, &id);
        // The sandbox's resolv.conf names a resolver that is not the gateway: the fence must
        // still deliver the queries to the gateway.
        std::fs::create_dir_all(format!("/etc/netns/{}", sb.name)).unwrap();
        std::fs::write(
            format!("/etc/netns/{}/resolv.conf", sb.name),
            format!("nameserver {OTHER_RESOLVER}\noptions timeout:1 attempts:1\n"),
        )
        .unwrap();

        setns(gw.fd.as_fd(), CloneFlags::CLONE_NEWNET)
            .expect("test thread joins the gateway netns");
        let gw_fd = Arc::new(gw.fd.try_clone().unwrap());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start(move || {
                setns(gw_fd.as_fd(), CloneFlags::CLONE_NEWNET)
                    .expect("runtime thread joins the gateway netns");
            })
            .build()
            .unwrap();

        let dir = tempfile::tempdir().unwrap();
        let (ca_pem, acceptor) = test_tls();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca_pem).unwrap();
        let hosts_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-hosts")
            .enable_all()
            .build()
            .unwrap();
        start_test_hosts(&hosts_rt, &inet, acceptor);

        let policy_value = spec.policy();
        let ports = GatewayPorts::default();
        net::setup_sealed(sb.fd.as_fd(), &policy_value, &ports).expect("sealing the sandbox netns");
        let dns_on = policy_value.dns == DnsResolver::Host;
        let socks = net::bind_gateway(sb.fd.as_fd(), &ports, dns_on, false)
            .expect("planting the gateway sockets");
        let policy = PolicyHandle::new(policy_value);
        let log_path = dir.path().join("logs/test/egress.jsonl");
        let log = EgressLog::open(&log_path).unwrap();
        let resolver = Arc::new(StaticResolver::new(test_names()));
        let mut eg = Egress::new("test", policy.clone(), resolver.clone(), log);
        eg.sniff_timeout = Duration::from_millis(300);
        eg.connect_timeout = Duration::from_secs(3);
        let egress = Arc::new(eg);
        let _guard = rt.enter();
        let serving = vec![egress::serve(
            Listeners {
                proxy: Some(socks.proxy),
                transparent: Some(socks.transparent),
            },
            egress.clone(),
        )
        .unwrap()];
        let dns = socks
            .dns_udp
            .map(|udp| dns::serve(udp, socks.dns_tcp, egress.clone()).unwrap());
        drop(_guard);
        World {
            sb,
            gw,
            inet,
            rt: Some(rt),
            hosts_rt: Some(hosts_rt),
            policy,
            ports,
            dir,
            log_path,
            ca_path,
            egress,
            serving,
            dns,
            orig_ns,
        }
    }

    pub fn rt(&self) -> &Runtime {
        self.rt.as_ref().unwrap()
    }

    /// `curl` inside the sandbox, with the test CA and a time limit.
    pub fn curl(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let ca = self.ca_path.to_str().unwrap().to_string();
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &self.sb.name,
            "curl",
            "-sS",
            "--max-time",
            "5",
            "--cacert",
            &ca,
        ]);
        cmd.args(args);
        for v in [
            "http_proxy",
            "https_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "all_proxy",
            "NO_PROXY",
            "no_proxy",
        ] {
            cmd.env_remove(v);
        }
        cmd.envs(env.iter().copied());
        cmd.output().expect("running curl in the sandbox")
    }

    /// Any command inside a namespace.
    pub fn exec_in(&self, ns: &Ns, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .args(args)
            .output()
            .expect("ip netns exec")
    }

    /// Runs `f` on a thread inside the sandbox netns (a raw client that ignores every proxy).
    pub fn in_sandbox<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> T {
        net::in_netns(self.sb.fd.as_fd(), f).expect("entering the sandbox netns")
    }

    /// Replaces the policy as the supervisor's reload would: fence and gateway, no restart.
    pub fn reload(&self, spec: &Spec) {
        net::reload(self.sb.fd.as_fd(), &self.policy, spec.policy(), &self.ports).expect("reload");
    }

    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log_path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("each egress log line is JSON"))
            .collect()
    }

    /// Waits (up to 3 s) until the log has at least `n` lines; allowed connections are logged
    /// when they close.
    pub fn wait_log_lines(&self, n: usize) -> Vec<serde_json::Value> {
        let until = Instant::now() + Duration::from_secs(3);
        loop {
            let lines = self.log_lines();
            if lines.len() >= n || Instant::now() > until {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.serving.clear();
        self.dns.take();
        if let Some(rt) = self.hosts_rt.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
        let _ = setns(self.orig_ns.as_fd(), CloneFlags::CLONE_NEWNET);
    }
}

fn link_test_hosts(gw: &Ns, inet: &Ns, id: &str) {
    let (a, b) = (format!("nca{id}"), format!("ncb{id}"));
    sh(
        "ip",
        &[
            "link", "add", &a, "netns", &gw.name, "type", "veth", "peer", "name", &b, "netns",
            &inet.name,
        ],
    );
    sh(
        "ip",
        &["-n", &gw.name, "addr", "add", "198.18.0.1/24", "dev", &a],
    );
    for ip in ["198.18.0.2/24", "198.18.0.3/24", "198.18.0.4/24"] {
        sh("ip", &["-n", &inet.name, "addr", "add", ip, "dev", &b]);
    }
    for (ns, dev) in [
        (&gw.name, "lo"),
        (&gw.name, a.as_str()),
        (&inet.name, "lo"),
        (&inet.name, b.as_str()),
    ] {
        sh("ip", &["-n", ns, "link", "set", dev, "up"]);
    }
}

/// A test CA and a server certificate for every test name; returns the CA PEM and an acceptor.
fn test_tls() -> (String, tokio_rustls::TlsAcceptor) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "nemoclaw test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let names: Vec<String> = test_names()
        .into_iter()
        .map(|(n, _)| n.to_string())
        .collect();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(names)
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
    .unwrap();
    (ca.pem(), tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn start_test_hosts(rt: &Runtime, inet: &Ns, tls: tokio_rustls::TlsAcceptor) {
    let mut addrs = vec![];
    for host in [HOST_A, HOST_B] {
        for port in [80, 443, ECHO_PORT] {
            addrs.push(SocketAddr::new(host.into(), port));
        }
    }
    let listeners =
        net::bind_tcp_in_netns(inet.fd.as_fd(), &addrs).expect("binding the test hosts' servers");
    let udp: UdpSocket =
        net::in_netns(inet.fd.as_fd(), || UdpSocket::bind((HOST_A, UDP_ECHO_PORT)))
            .unwrap()
            .unwrap();
    udp.set_nonblocking(true).unwrap();
    let _g = rt.enter();
    for l in listeners {
        let l = tokio::net::TcpListener::from_std(l).unwrap();
        let port = l.local_addr().unwrap().port();
        let tls = tls.clone();
        rt.spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else {
                    continue;
                };
                let _ = s.set_nodelay(true);
                let tls = tls.clone();
                tokio::spawn(async move {
                    match port {
                        443 => {
                            if let Ok(t) = tls.accept(s).await {
                                serve_http(t).await;
                            }
                        }
                        ECHO_PORT => {
                            let (mut r, mut w) = s.into_split();
                            let _ = tokio::io::copy(&mut r, &mut w).await;
                        }
                        _ => serve_http(s).await,
                    }
                });
            }
        });
    }
    let udp = tokio::net::UdpSocket::from_std(udp).unwrap();
    rt.spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = udp.recv_from(&mut buf).await {
            let _ = udp.send_to(&buf[..n], from).await;
        }
    });
}

/// A tiny HTTP/1.1 server: `/hello` says who was asked for, `/bytes/N` sends N bytes.
async fn serve_http<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    let host = text
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("host"))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    if let Some(n) = path.strip_prefix("/bytes/") {
        let n: u64 = n.parse().unwrap_or(0);
        let hdr = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n");
        if s.write_all(hdr.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b'x'; 1 << 20];
        let mut left = n;
        while left > 0 {
            let k = left.min(chunk.len() as u64) as usize;
            if s.write_all(&chunk[..k]).await.is_err() {
                return;
            }
            left -= k as u64;
        }
    } else {
        let body = format!("hello from {host} {path}\n");
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = s.write_all(resp.as_bytes()).await;
    }
    let _ = s.shutdown().await;
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A DNS answer as a test sees it.
#[derive(Debug)]
pub struct DnsReply {
    pub rcode: hickory_proto::op::ResponseCode,
    pub a: Vec<Ipv4Addr>,
    pub answers: usize,
}

/// Sends one DNS question to `server` (UDP, or TCP when `tcp`) from inside the sandbox, as any
/// program there could. `Err` when no answer comes back.
pub fn dns_query(
    w: &World,
    server: SocketAddr,
    name: &str,
    qtype: hickory_proto::rr::RecordType,
    tcp: bool,
) -> std::io::Result<DnsReply> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData};
    use std::io::{Read, Write};
    let mut m = Message::new();
    m.set_id(0x4e43);
    m.set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    let q = m.to_vec().unwrap();
    let raw = w.in_sandbox(move || -> std::io::Result<Vec<u8>> {
        if tcp {
            let mut s = std::net::TcpStream::connect_timeout(&server, Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.write_all(&(q.len() as u16).to_be_bytes())?;
            s.write_all(&q)?;
            let mut len = [0u8; 2];
            s.read_exact(&mut len)?;
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut buf)?;
            Ok(buf)
        } else {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.send_to(&q, server)?;
            let mut buf = vec![0u8; 4096];
            let (n, _) = s.recv_from(&mut buf)?;
            buf.truncate(n);
            Ok(buf)
        }
    })?;
    let r = Message::from_vec(&raw).map_err(std::io::Error::other)?;
    let a = r
        .answers()
        .iter()
        .filter_map(|rec| match rec.data() {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    Ok(DnsReply {
        rcode: r.response_code(),
        a,
        answers: r.answers().len(),
    })
}
