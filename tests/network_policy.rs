//! Network policy enforced by the kernel and the egress gateway: real namespaces, real
//! nftables, real HTTP/TLS servers on test hosts in 198.18.0.0/15. Needs root.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "a test stops loudly at the first broken step"
)]

mod network_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use network_support::{
    dns_query, stderr, stdout, Spec, World, ECHO_PORT, HOST_A, OTHER_RESOLVER, UDP_ECHO_PORT,
};

const PROXY: &str = "http://127.0.0.1:3128";

fn json_body(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim())
        .unwrap_or_else(|e| panic!("expected a JSON body, got {s:?}: {e}"))
}

/// A raw client inside the sandbox that ignores every proxy: connect, send, read to EOF.
fn raw_exchange(w: &World, to: SocketAddr, send: &[u8]) -> std::io::Result<Vec<u8>> {
    let send = send.to_vec();
    w.in_sandbox(move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.write_all(&send)?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        Ok(out)
    })
}

#[test]
fn allowed_domain_through_the_explicit_proxy() {
    let w = World::new(Spec::default());
    // curl honouring HTTPS_PROXY / http_proxy from its environment (curl ignores upper-case HTTP_PROXY) (CONNECT and absolute-form).
    let env = [
        ("HTTPS_PROXY", PROXY),
        ("http_proxy", PROXY),
        ("NO_PROXY", "inference.local,localhost,127.0.0.1"),
    ];
    let o = w.curl(&["https://api.test.example/hello"], &env);
    assert!(
        o.status.success(),
        "curl via HTTPS_PROXY failed: {}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), "hello from api.test.example /hello\n");
    let o = w.curl(&["-v", "http://api.test.example/plain"], &env);
    assert!(
        o.status.success(),
        "absolute-form via HTTP_PROXY failed: {}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), "hello from api.test.example /plain\n");
    assert!(
        stderr(&o).contains("GET http://api.test.example/plain"),
        "curl did not use the proxy: {}",
        stderr(&o)
    );
    let lines = w.wait_log_lines(2);
    assert!(
        lines
            .iter()
            .all(|l| l["mode"] == "explicit" && l["decision"] == "allow"),
        "{lines:?}"
    );
}

#[test]
fn allowed_domain_with_the_proxy_ignored() {
    let w = World::new(Spec::default());
    // Name resolution goes through the gateway's DNS (the fence redirects port 53), the
    // connection through the transparent listener.
    let o = w.curl(&["--noproxy", "*", "https://api.test.example/tls"], &[]);
    assert!(
        o.status.success(),
        "transparent HTTPS failed: {}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), "hello from api.test.example /tls\n");
    let o = w.curl(&["--noproxy", "*", "http://api.test.example/http"], &[]);
    assert!(
        o.status.success(),
        "transparent HTTP failed: {}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), "hello from api.test.example /http\n");
    // A raw TCP client that knows nothing of proxies.
    let resp = raw_exchange(
        &w,
        SocketAddr::new(HOST_A.into(), 80),
        b"GET /raw HTTP/1.1\r\nHost: api.test.example\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.ends_with("hello from api.test.example /raw\n"),
        "{resp}"
    );
    let lines = w.wait_log_lines(3);
    assert!(
        lines
            .iter()
            .all(|l| l["mode"] == "transparent" && l["decision"] == "allow"),
        "{lines:?}"
    );
    // The gateway dialled its own resolution of the name.
    assert!(
        lines
            .iter()
            .all(|l| l["addr"].as_str().unwrap().starts_with("198.18.0.2:")),
        "{lines:?}"
    );
}

#[test]
fn wildcard_matches_subdomains_only() {
    let w = World::new(Spec::default());
    let o = w.curl(&["--noproxy", "*", "https://x.wild.example/w"], &[]);
    assert!(
        o.status.success(),
        "wildcard via transparent failed: {}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), "hello from x.wild.example /w\n");
    let o = w.curl(&["--proxy", PROXY, "https://x.wild.example/w"], &[]);
    assert!(
        o.status.success(),
        "wildcard via proxy failed: {}",
        stderr(&o)
    );
    // The apex is not covered by `*.wild.example`.
    let o = w.curl(
        &[
            "--proxy",
            PROXY,
            "-w",
            "\n%{http_code}",
            "http://wild.example/",
        ],
        &[],
    );
    let out = stdout(&o);
    assert!(out.ends_with("\n403"), "{out}");
    assert_eq!(
        json_body(out.trim_end_matches("403"))["host"],
        "wild.example"
    );
}

#[test]
fn disallowed_domain_is_refused_with_an_explanation() {
    let w = World::new(Spec::default());
    // Absolute-form through the proxy: 403 with the JSON body.
    let o = w.curl(
        &[
            "--proxy",
            PROXY,
            "-w",
            "\n%{http_code}",
            "http://other.example/x",
        ],
        &[],
    );
    let out = stdout(&o);
    assert!(out.ends_with("\n403"), "{out} {}", stderr(&o));
    let body = json_body(out.trim_end_matches("403"));
    assert_eq!(body["error"], "policy_denied");
    assert_eq!(body["host"], "other.example");
    assert_eq!(body["port"], 80);
    assert!(
        body["rule"].is_string() && body["hint"].as_str().unwrap().contains("allowedDomains"),
        "{body}"
    );
    // CONNECT: a raw client reads the 403 and its JSON.
    let proxy: SocketAddr = "127.0.0.1:3128".parse().unwrap();
    let resp = raw_exchange(
        &w,
        proxy,
        b"CONNECT other.example:443 HTTP/1.1\r\nHost: other.example:443\r\n\r\n",
    )
    .unwrap();
    let resp = String::from_utf8_lossy(&resp).to_string();
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    let body = json_body(resp.split("\r\n\r\n").nth(1).unwrap());
    assert_eq!(body["error"], "policy_denied");
    assert_eq!(body["port"], 443);
    // Transparent TLS to a disallowed name: the handshake is refused (connection closed).
    let started = Instant::now();
    let o = w.curl(
        &[
            "--noproxy",
            "*",
            "--resolve",
            "other.example:443:198.18.0.2",
            "https://other.example/",
        ],
        &[],
    );
    assert!(!o.status.success());
    assert_eq!(
        o.status.code(),
        Some(35),
        "expected a failed TLS handshake: {}",
        stderr(&o)
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the refusal was slow: {:?}",
        started.elapsed()
    );
    // Transparent HTTP to a disallowed name: 403 JSON.
    let o = w.curl(
        &[
            "--noproxy",
            "*",
            "--resolve",
            "other.example:80:198.18.0.2",
            "-w",
            "\n%{http_code}",
            "http://other.example/",
        ],
        &[],
    );
    assert!(stdout(&o).ends_with("\n403"), "{}", stdout(&o));
    let lines = w.wait_log_lines(4);
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l["decision"] == "deny" && l["host"] == "other.example"),
        "{lines:?}"
    );
}

#[test]
fn blocked_port_is_refused_at_once() {
    let w = World::new(Spec::default());
    let to = SocketAddr::new(HOST_A.into(), 25);
    let (res, took) = w.in_sandbox(move || {
        let started = Instant::now();
        let r = TcpStream::connect_timeout(&to, Duration::from_secs(3));
        (r.map(|_| ()), started.elapsed())
    });
    let err = res.expect_err("a blocked port must not connect");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    assert!(took < Duration::from_millis(100), "refusal took {took:?}");
}

#[test]
fn direct_ip_connections_need_an_address_rule() {
    let w = World::new(Spec::default());
    // HTTP to an IP literal: no name to check, so 403.
    let o = w.curl(
        &[
            "--noproxy",
            "*",
            "-w",
            "\n%{http_code}",
            "http://198.18.0.2/",
        ],
        &[],
    );
    assert!(
        stdout(&o).ends_with("\n403"),
        "{} {}",
        stdout(&o),
        stderr(&o)
    );
    assert!(json_body(stdout(&o).trim_end_matches("403"))["hint"]
        .as_str()
        .unwrap()
        .contains("allowAddresses"));
    // A protocol with neither SNI nor Host: closed, nothing echoed.
    let echo = SocketAddr::new(HOST_A.into(), ECHO_PORT);
    let got = raw_exchange(&w, echo, b"ping\n").unwrap_or_default();
    assert!(got.is_empty(), "a nameless connection got through: {got:?}");
    // Allowed explicitly by address and port: it flows.
    let mut spec = Spec::default();
    spec.allow.push(format!("198.18.0.2/32:{ECHO_PORT}"));
    w.reload(&spec);
    let to = echo;
    let echoed = w.in_sandbox(move || -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.write_all(b"ping\n")?;
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf)?;
        Ok(buf.to_vec())
    });
    assert_eq!(echoed.unwrap(), b"ping\n");
}

#[test]
fn udp_goes_nowhere() {
    let w = World::new(Spec::default());
    let res = w.in_sandbox(|| {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let started = Instant::now();
        let r = s.send_to(b"x", (HOST_A, UDP_ECHO_PORT));
        (r, started.elapsed())
    });
    let err = res.0.expect_err("UDP left the sandbox");
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    assert!(res.1 < Duration::from_millis(100));
}

#[test]
fn dns_answers_only_allowed_names() {
    let w = World::new(Spec::default());
    // Aimed at another resolver (198.18.0.4 runs none): answered by the gateway anyway.
    let other = SocketAddr::new(OTHER_RESOLVER.into(), 53);
    let r = dns_query(&w, other, "api.test.example.", RecordType::A, false).unwrap();
    assert_eq!(
        (r.rcode, r.a.clone()),
        (ResponseCode::NoError, vec![HOST_A]),
        "{r:?}"
    );
    let r = dns_query(&w, other, "other.example.", RecordType::A, false).unwrap();
    assert_eq!(r.rcode, ResponseCode::NXDomain, "{r:?}");
    let r = dns_query(&w, other, "x.wild.example.", RecordType::A, true).unwrap();
    assert_eq!(
        (r.rcode, r.a.len()),
        (ResponseCode::NoError, 1),
        "DNS over TCP: {r:?}"
    );
    let r = dns_query(&w, other, "api.test.example.", RecordType::AAAA, false).unwrap();
    assert_eq!(
        (r.rcode, r.answers),
        (ResponseCode::NoError, 0),
        "no AAAA: {r:?}"
    );
    let r = dns_query(&w, other, "inference.local.", RecordType::A, false).unwrap();
    assert_eq!(r.a, vec![std::net::Ipv4Addr::LOCALHOST]);
    // A loopback resolver address (systemd-resolved's 127.0.0.53) lands on the gateway too.
    let stub = SocketAddr::new(std::net::Ipv4Addr::new(127, 0, 0, 53).into(), 53);
    let r = dns_query(&w, stub, "api.test.example.", RecordType::A, false).unwrap();
    assert_eq!(r.a, vec![HOST_A], "{r:?}");
    // The system resolver (the sandbox's resolv.conf names 198.18.0.4) lands on the gateway.
    let o = w.exec_in(&w.sb, &["getent", "hosts", "api.test.example"]);
    assert!(stdout(&o).starts_with("198.18.0.2"), "{}", stdout(&o));
    let o = w.exec_in(&w.sb, &["getent", "hosts", "other.example"]);
    assert!(!o.status.success(), "{}", stdout(&o));
    // Refused names are audited in egress.jsonl (allowed ones show up with their connections).
    let dns: Vec<_> = w
        .log_lines()
        .into_iter()
        .filter(|l| l["mode"] == "dns")
        .collect();
    assert!(!dns.is_empty(), "no dns lines in the egress log");
    assert!(
        dns.iter().all(|l| l["decision"] == "deny"
            && l["host"] == "other.example"
            && l["port"] == 53
            && l["rule"] == "not in network.egress.allowedDomains"),
        "{dns:#?}"
    );
}

#[test]
fn dns_resolver_none_means_no_dns() {
    let spec = Spec {
        dns: nemoclaw::blueprint::types::DnsResolver::None,
        ..Spec::default()
    };
    let w = World::new(spec);
    let other = SocketAddr::new(OTHER_RESOLVER.into(), 53);
    let err = dns_query(&w, other, "api.test.example.", RecordType::A, false).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    assert!(dns_query(&w, other, "api.test.example.", RecordType::A, true).is_err());
}

#[test]
fn names_resolving_to_internal_addresses_are_denied() {
    // Nothing exempt from the SSRF guard.
    let spec = Spec {
        allow: vec![],
        ..Spec::default()
    };
    let w = World::new(spec);
    for (name, why) in [("loop.example", "loopback"), ("meta.example", "metadata")] {
        let o = w.curl(
            &[
                "--proxy",
                PROXY,
                "-w",
                "\n%{http_code}",
                &format!("http://{name}/"),
            ],
            &[],
        );
        let out = stdout(&o);
        assert!(out.ends_with("\n403"), "{name}: {out}");
        let body = json_body(out.trim_end_matches("403"));
        let rule = body["rule"].as_str().unwrap();
        assert!(
            rule.contains("SSRF") && rule.contains(why),
            "{name}: {body}"
        );
    }
}

#[test]
fn hot_reload_flips_a_decision() {
    let w = World::new(Spec::default());
    let get = |w: &World| {
        stdout(&w.curl(
            &[
                "--proxy",
                PROXY,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "http://other.example/",
            ],
            &[],
        ))
    };
    assert_eq!(get(&w), "403");
    let to = SocketAddr::new(HOST_A.into(), 80);
    let mut spec = Spec::default();
    spec.domains.push("other.example".into());
    spec.blocked.push(8080);
    w.reload(&spec);
    assert_eq!(get(&w), "200");
    // The fence changed too: 8080 is now refused by the kernel.
    let err = w.in_sandbox(move || {
        TcpStream::connect_timeout(&SocketAddr::new(to.ip(), 8080), Duration::from_secs(2))
            .map(|_| ())
    });
    assert_eq!(
        err.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    w.reload(&Spec::default());
    assert_eq!(get(&w), "403");
}

#[test]
fn one_log_line_per_decision() {
    let w = World::new(Spec::default());
    w.curl(&["--proxy", PROXY, "https://api.test.example/a"], &[]);
    w.curl(&["--noproxy", "*", "https://api.test.example/b"], &[]);
    w.curl(&["--proxy", PROXY, "http://other.example/c"], &[]);
    let lines = w.wait_log_lines(3);
    std::thread::sleep(Duration::from_millis(200));
    let lines2 = w.log_lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines2.len(), 3, "late extra lines: {lines2:?}");
    for l in &lines {
        for k in [
            "time",
            "sandbox",
            "mode",
            "host",
            "port",
            "decision",
            "rule",
            "bytes_out",
            "bytes_in",
            "duration_ms",
        ] {
            assert!(l.get(k).is_some(), "missing {k} in {l}");
        }
        assert_eq!(l["sandbox"], "test");
    }
    let allowed: Vec<_> = lines.iter().filter(|l| l["decision"] == "allow").collect();
    assert_eq!(allowed.len(), 2);
    assert!(
        allowed
            .iter()
            .all(|l| l["bytes_in"].as_u64().unwrap() > 0 && l["bytes_out"].as_u64().unwrap() > 0),
        "{allowed:?}"
    );
    assert_eq!(lines.iter().filter(|l| l["decision"] == "deny").count(), 1);
}

#[test]
fn sandbox_netns_has_no_link_outside() {
    let w = World::new(Spec::default());
    let o = w.exec_in(&w.gw, &["ip", "-n", &w.sb.name, "-j", "-d", "link", "show"]);
    let links: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).expect("ip -j link");
    let names: Vec<&str> = links
        .iter()
        .map(|l| l["ifname"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    for l in &links {
        assert!(
            l.get("link_netnsid").is_none(),
            "{} is linked to another namespace: {l}",
            l["ifname"]
        );
    }
    // The fence is in place inside the sandbox netns, and only there.
    let o = w.exec_in(&w.sb, &["nft", "list", "table", "inet", "nemoclaw"]);
    let fence = stdout(&o);
    for rule in [
        "redirect to :15001",
        "fib daddr type local accept",
        "tcp dport 25 reject with tcp reset",
        "ct state established,related accept",
    ] {
        assert!(fence.contains(rule), "missing `{rule}` in:\n{fence}");
    }
    let o = w.exec_in(&w.gw, &["nft", "list", "tables"]);
    assert!(
        !stdout(&o).contains("nemoclaw"),
        "the fence leaked into another namespace"
    );
    let o = w.exec_in(
        &w.gw,
        &["ip", "-n", &w.sb.name, "-6", "route", "show", "default"],
    );
    assert!(
        stdout(&o).trim().is_empty(),
        "an IPv6 default route: {}",
        stdout(&o)
    );
    let o = w.exec_in(&w.gw, &["ip", "-n", &w.sb.name, "route", "show", "default"]);
    assert!(stdout(&o).contains("dev nc0"), "{}", stdout(&o));
}

#[test]
fn ingress_forwards_a_host_loopback_port_into_the_sandbox() {
    use nemoclaw::gateway::egress::ingress::serve_ingress;
    use nemoclaw::policy::network::IngressRule;
    use std::os::fd::AsFd;
    let w = World::new(Spec::default());
    // The agent's "dashboard": an echo server on the sandbox's own loopback.
    let inside: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let l = nemoclaw::gateway::netns::bind_tcp_in_netns(w.sb.fd.as_fd(), &[inside])
        .unwrap()
        .pop()
        .unwrap();
    let _g = w.rt().enter();
    let l = tokio::net::TcpListener::from_std(l).unwrap();
    w.rt().spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut wr) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut wr).await;
            });
        }
    });
    let log = nemoclaw::gateway::egress::EgressLog::open(&w.log_path).unwrap();
    let rules = [IngressRule {
        host_port: 18080,
        port: 8080,
    }];
    let _serving = w
        .rt()
        .block_on(serve_ingress(
            w.sb.fd.try_clone().unwrap(),
            &rules,
            "test",
            log,
        ))
        .unwrap();
    // From the host side (this thread is in the gateway's namespace).
    let mut s = TcpStream::connect("127.0.0.1:18080").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(b"dashboard\n").unwrap();
    let mut buf = [0u8; 10];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"dashboard\n");
    drop(s);
    // Nothing else reaches in: the sandbox's address is not routed from the host side.
    let err =
        TcpStream::connect_timeout(&"192.0.2.2:8080".parse().unwrap(), Duration::from_secs(1))
            .unwrap_err();
    assert!(
        matches!(
            err.raw_os_error(),
            Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH)
        ) || err.kind() == std::io::ErrorKind::TimedOut,
        "{err}"
    );
    let lines = w.wait_log_lines(1);
    assert_eq!(lines[0]["mode"], "ingress", "{lines:?}");
}
