//! Egress gateway benchmark: a 1 GiB HTTP download from a test host (a network namespace this
//! benchmark creates, 198.18.0.2) through the gateway, explicit (CONNECT tunnel and
//! absolute-form) and transparent, against the same download made directly from the
//! gateway's own namespace; then the connect latency the gateway adds (median request round
//! trip, fresh connection each time). Needs root. `NEMOCLAW_BENCH_BYTES` changes the size.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "a benchmark stops loudly at the first broken step, and its statistics are floats rounded for display"
)]

#[path = "../tests/network_support/mod.rs"]
mod network_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use network_support::{stderr, stdout, Spec, World, HOST_A};

/// Rounds; each round runs every path once (interleaved, so load from other processes hits
/// all paths alike) and the best of each path is reported.
const RUNS: usize = 7;
const LATENCY_SAMPLES: usize = 300;

/// CPU seconds used so far by this process (test server + gateway) and by waited-for children
/// (curl).
fn cpu() -> (f64, f64) {
    let get = |who| {
        // SAFETY: rusage is plain old data (integers and timevals): all-zero bytes are a valid
        // value of it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `who` is a valid RUSAGE_* constant and `ru` a live, writable rusage.
        unsafe { libc::getrusage(who, &mut ru) };
        let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        t(ru.ru_utime) + t(ru.ru_stime)
    };
    (get(libc::RUSAGE_SELF), get(libc::RUSAGE_CHILDREN))
}

/// One download: (MiB/s, CPU seconds of server + gateway, CPU seconds of the client).
fn download(w: &World, in_sandbox: bool, extra: &[&str], url: &str) -> (f64, f64, f64) {
    let before = cpu();
    let mut args: Vec<&str> = vec![
        "curl",
        "-sS",
        "--max-time",
        "120",
        "-o",
        "/dev/null",
        "-w",
        "%{speed_download}",
    ];
    args.extend_from_slice(extra);
    args.push(url);
    let ns = if in_sandbox { &w.sb } else { &w.gw };
    let o = w.exec_in(ns, &args);
    assert!(o.status.success(), "curl {args:?} failed: {}", stderr(&o));
    let after = cpu();
    let speed = stdout(&o)
        .trim()
        .parse::<f64>()
        .expect("curl's speed_download")
        / (1024.0 * 1024.0);
    (speed, after.0 - before.0, after.1 - before.1)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One fresh connection, one small request, the whole response: seconds.
fn round_trip(to: SocketAddr, connect_first: Option<&str>) -> f64 {
    let started = Instant::now();
    let mut s = TcpStream::connect(to).unwrap();
    s.set_nodelay(true).unwrap();
    if let Some(target) = connect_first {
        write!(s, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).unwrap();
            head.push(b[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&head)
        );
    }
    s.write_all(b"GET /hello HTTP/1.1\r\nHost: api.test.example\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    assert!(out.starts_with(b"HTTP/1.1 200"));
    started.elapsed().as_secs_f64()
}

fn latencies(
    w: &World,
    in_sandbox: bool,
    to: SocketAddr,
    connect_first: Option<&'static str>,
) -> f64 {
    let run = move || {
        for _ in 0..20 {
            round_trip(to, connect_first);
        }
        median(
            (0..LATENCY_SAMPLES)
                .map(|_| round_trip(to, connect_first))
                .collect(),
        )
    };
    if in_sandbox {
        w.in_sandbox(run)
    } else {
        run()
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benchmarks; nothing to list here
    }
    let bytes: u64 = std::env::var("NEMOCLAW_BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30);
    let w = World::new(Spec::default());
    let url = format!("http://api.test.example/bytes/{bytes}");
    let resolve = "api.test.example:80:198.18.0.2";
    let proxy = "http://127.0.0.1:3128";
    let cases: [(&str, bool, Vec<&str>); 4] = [
        (
            "direct, from the gateway's netns",
            false,
            vec!["--resolve", resolve],
        ),
        (
            "explicit proxy, CONNECT tunnel",
            true,
            vec!["--proxy", proxy, "--proxytunnel"],
        ),
        (
            "explicit proxy, absolute-form",
            true,
            vec!["--proxy", proxy],
        ),
        ("transparent (proxy ignored)", true, vec!["--noproxy", "*"]),
    ];
    println!(
        "egress throughput: {} MiB over HTTP from a test host, best of {RUNS} interleaved runs",
        bytes >> 20
    );
    let mut best = [0.0f64; 4];
    let mut cpu_self = [f64::MAX; 4];
    let mut cpu_client = [f64::MAX; 4];
    for _ in 0..RUNS {
        for (i, (_, sb, extra)) in cases.iter().enumerate() {
            let (speed, cs, cc) = download(&w, *sb, extra, &url);
            best[i] = best[i].max(speed);
            cpu_self[i] = cpu_self[i].min(cs);
            cpu_client[i] = cpu_client[i].min(cc);
        }
    }
    let gib = bytes as f64 / f64::from(1u32 << 30);
    println!(
        "{:<36} {:>10} {:>8} {:>22} {:>16}",
        "path", "MiB/s", "ratio", "server+gateway CPU s/GiB", "client CPU s/GiB"
    );
    for (i, (name, _, _)) in cases.iter().enumerate() {
        println!(
            "{name:<36} {:>10.0} {:>8.2} {:>22.2} {:>16.2}",
            best[i],
            best[i] / best[0],
            cpu_self[i] / gib,
            cpu_client[i] / gib
        );
    }
    let target = SocketAddr::new(HOST_A.into(), 80);
    let proxy_addr: SocketAddr = "127.0.0.1:3128".parse().unwrap();
    let d = latencies(&w, false, target, None);
    let t = latencies(&w, true, target, None);
    let e = latencies(&w, true, proxy_addr, Some("api.test.example:80"));
    println!();
    println!("request round trip on a fresh connection, median of {LATENCY_SAMPLES}");
    println!("{:<36} {:>10} {:>10}", "path", "ms", "added ms");
    for (name, v) in [
        ("direct, from the gateway's netns", d),
        ("transparent", t),
        ("explicit proxy, CONNECT", e),
    ] {
        println!("{name:<36} {:>10.3} {:>10.3}", v * 1e3, (v - d) * 1e3);
    }
}
