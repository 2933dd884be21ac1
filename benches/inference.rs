//! Gateway overhead, side by side with the LiteLLM proxy, in one run:
//!
//! ```sh
//! .ci/setup-python.sh --bench            # litellm[proxy] into .venv-tests/
//! cargo bench --bench inference            # NEMOCLAW_BENCH_SECS=10, NEMOCLAW_BENCH_SKIP_LITELLM=1
//! ```
//!
//! A fast backend (`nemoclaw gateway mock-backend`, its own process) answers a fixed-size chat
//! completion. The same load (a Rust HTTP/1.1 keep-alive client: 1 connection for latency, 64
//! for throughput) is sent to the backend directly, to `nemoclaw gateway serve` in front of it
//! (validation, routing, key injection, secret guard and the JSON-lines log all on), and to the
//! LiteLLM proxy in front of it. Added latency is each target's percentile minus the direct
//! one. It also times the pure parts in-process: validation and a typical Rhai guard.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "a benchmark stops loudly at the first broken step, and its statistics are floats rounded for display"
)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use nemoclaw::gateway::inference::guard::Guards;
use nemoclaw::gateway::inference::route::AllowList;
use nemoclaw::gateway::inference::validate::{validate, Endpoint, RequestLimits};

const BODY: &str =
    r#"{"model":"mock-1","messages":[{"role":"user","content":"hi"}],"max_tokens":16}"#;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nemoclaw(args: &[&str], home: &Path) -> (Proc, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nemoclaw"))
        .args(args)
        .env("NEMOCLAW_HOME", home)
        .env("BENCH_BACKEND_KEY", "bench-backend-key-0123456789")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("nemoclaw runs");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("nemoclaw did not start: {line:?}"));
    (
        Proc(child),
        v["listening"].as_str().unwrap().parse().unwrap(),
    )
}

#[derive(Default, Clone)]
struct Stats {
    rps: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    errors: u64,
    n: usize,
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1e6
}

/// `conc` keep-alive connections sending BODY back to back for `warm + secs`; only the last
/// `secs` are measured.
async fn load(addr: SocketAddr, conc: usize, warm: Duration, secs: Duration) -> Stats {
    let start = Instant::now();
    let (from, until) = (start + warm, start + warm + secs);
    let mut tasks = Vec::new();
    for _ in 0..conc {
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 16);
            let mut errors = 0u64;
            let Ok(s) = tokio::net::TcpStream::connect(addr).await else {
                return (lat, 1);
            };
            let _ = s.set_nodelay(true);
            let Ok((mut tx, conn)) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s)).await
            else {
                return (lat, 1);
            };
            tokio::spawn(conn);
            let body = Bytes::from_static(BODY.as_bytes());
            loop {
                let now = Instant::now();
                if now >= until {
                    break;
                }
                let req = Request::post("/v1/chat/completions")
                    .header("host", "inference.local")
                    .header("content-type", "application/json")
                    .header("authorization", "Bearer nemoclaw-placeholder-key")
                    .body(Full::new(body.clone()))
                    .unwrap();
                let t = Instant::now();
                let ok = match tx.send_request(req).await {
                    Ok(r) => {
                        let good = r.status() == 200;
                        r.into_body().collect().await.is_ok() && good
                    }
                    Err(_) => false,
                };
                if !ok {
                    errors += 1;
                    if tx.ready().await.is_err() {
                        break;
                    }
                }
                if t >= from {
                    lat.push(t.elapsed().as_nanos() as u64);
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    all.sort_unstable();
    Stats {
        rps: all.len() as f64 / secs.as_secs_f64(),
        p50: pct(&all, 0.5),
        p90: pct(&all, 0.9),
        p99: pct(&all, 0.99),
        errors,
        n: all.len(),
    }
}

fn litellm(backend: SocketAddr, dir: &Path, workers: u32) -> Option<(Proc, SocketAddr)> {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-tests/bin/litellm");
    if !bin.exists() {
        eprintln!(
            "LiteLLM not installed ({}): run .ci/setup-python.sh --bench; skipping it",
            bin.display()
        );
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.join("litellm.yaml");
    std::fs::write(
        &cfg,
        format!(
            "model_list:\n  - model_name: mock-1\n    litellm_params:\n      model: openai/mock-1\n      api_base: http://{backend}/v1\n      api_key: dummy\nlitellm_settings:\n  num_retries: 0\n  telemetry: false\ngeneral_settings:\n  disable_spend_logs: true\n  disable_error_logs: true\n"
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--num_workers",
            &workers.to_string(),
        ])
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("LITELLM_TELEMETRY", "False")
        .env(
            "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY",
            "true",
        )
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let p = Proc(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(90) {
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            use std::io::{Read, Write};
            let _ = s.write_all(
                b"GET /health/liveliness HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            let mut r = String::new();
            let _ = s.read_to_string(&mut r);
            if r.starts_with("HTTP/1.1 200") {
                return Some((p, addr));
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!("LiteLLM did not come up within 90s; skipping it");
    None
}

fn micro() {
    let limits = RequestLimits {
        max_tokens: Some(512),
        temperature: Some((0.0, 1.0)),
        max_request_size: 4 << 20,
        max_choices: 1,
        max_tools: 128,
        want_stream_usage: false,
    };
    let allowed = AllowList::new(&["mock-1".into(), "nim/*".into()]);
    let body = br#"{"model":"mock-1","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Summarise the attached design notes in three bullet points, please."}],"temperature":0.2}"#;
    let n = 20_000u32;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(validate(Endpoint::Chat, body, &limits, &allowed).unwrap());
    }
    let v = t.elapsed() / n;
    let g = Guards::compile(vec![(
        PathBuf::from("injection.rhai"),
        r#"if regex_match(prompt, "(?i)ignore (all )?previous instructions") { return deny("prompt injection"); }
           allow()"#
            .into(),
        false,
    )])
    .unwrap();
    let mut map = validate(Endpoint::Chat, body, &limits, &allowed)
        .unwrap()
        .body;
    for _ in 0..1000 {
        g.on_request("chat.completions", "mock-1", &mut map)
            .unwrap();
    }
    let t = Instant::now();
    for _ in 0..n {
        g.on_request("chat.completions", "mock-1", &mut map)
            .unwrap();
    }
    let per = t.elapsed() / n;
    println!("in-process: validation {:.2} µs/request; typical Rhai guard {:.2} µs/request (goal < 50 µs)", v.as_secs_f64() * 1e6, per.as_secs_f64() * 1e6);
}

fn row(name: &str, c: usize, s: &Stats, direct: Option<&Stats>) {
    let add = |x: f64, d: Option<f64>| d.map_or("-".to_string(), |d| format!("{:+.3}", x - d));
    println!(
        "| {name:<22} | {c:>3} | {:>9.0} | {:>8.3} | {:>8.3} | {:>8.3} | {:>6} | {:>8} | {:>8} |",
        s.rps,
        s.p50,
        s.p90,
        s.p99,
        s.errors,
        add(s.p50, direct.map(|d| d.p50)),
        add(s.p99, direct.map(|d| d.p99)),
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; there are no unit tests here.
    }
    let secs = Duration::from_secs(
        std::env::var("NEMOCLAW_BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5),
    );
    let warm = Duration::from_secs(2);
    let skip_litellm = std::env::var("NEMOCLAW_BENCH_SKIP_LITELLM").is_ok_and(|v| v == "1");
    let workers: u32 = std::env::var("NEMOCLAW_BENCH_LITELLM_WORKERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    micro();

    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let (_backend, backend) = nemoclaw(
        &[
            "gateway",
            "mock-backend",
            "--listen",
            "127.0.0.1:0",
            "--threads",
            "1",
        ],
        &home,
    );
    let bp = tmp.path().join("bench.yaml");
    std::fs::write(
        &bp,
        format!(
            "apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: bench\n  version: 1\nagent:\n  type: demo\ninference:\n  backends:\n    - name: fast\n      kind: openai\n      url: http://{backend}/v1\n      apiKey: {{env: BENCH_BACKEND_KEY}}\n  allowedModels: [mock-1]\n  limits:\n    maxTokens: 512\n    temperature: {{min: 0, max: 1}}\n"
        ),
    )
    .unwrap();
    let (_gw, gw) = nemoclaw(
        &[
            "gateway",
            "serve",
            "--blueprint",
            bp.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &home,
    );
    let lite = if skip_litellm {
        None
    } else {
        litellm(backend, tmp.path(), workers)
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut targets: Vec<(String, SocketAddr)> = vec![
        ("direct (mock backend)".into(), backend),
        ("nemoclaw gateway".into(), gw),
    ];
    if let Some((_, a)) = &lite {
        targets.push((format!("litellm proxy w={workers}"), *a));
    }
    let mut results = Vec::new();
    for (name, addr) in &targets {
        let one = rt.block_on(load(*addr, 1, warm, secs));
        let many = rt.block_on(load(*addr, 64, warm, secs));
        results.push((name.clone(), one, many));
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!("Gateway overhead on {cpus} cores, {}s per run after {}s warm-up; latency in ms; added = target - direct", secs.as_secs(), warm.as_secs());
    println!("| target                 | c   | req/s     | p50      | p90      | p99      | errors | +p50     | +p99     |");
    println!("|------------------------|-----|-----------|----------|----------|----------|--------|----------|----------|");
    let direct = results[0].clone();
    for (i, (name, one, many)) in results.iter().enumerate() {
        let d = (i > 0).then_some(&direct);
        row(name, 1, one, d.map(|d| &d.1));
        row(name, 64, many, d.map(|d| &d.2));
    }
    let ours = &results[1];
    println!();
    println!(
        "nemoclaw: added latency at 1 client p50 {:.3} ms (goal < 0.1), p99 {:.3} ms (goal < 1); throughput at 64 clients {:.0} req/s (goal >= 10000)",
        ours.1.p50 - direct.1.p50,
        ours.1.p99 - direct.1.p99,
        ours.2.rps
    );
    if let Some(lite) = results.get(2) {
        let (ours_add, lite_add) = (ours.1.p50 - direct.1.p50, lite.1.p50 - direct.1.p50);
        println!(
            "vs LiteLLM: throughput {:.1}x (goal >= 10x); added p50 latency {:.3} ms vs {:.3} ms = 1/{:.0} (goal <= 1/10); added p99 {:.3} ms vs {:.3} ms",
            ours.2.rps / lite.2.rps.max(1e-9),
            ours_add,
            lite_add,
            lite_add / ours_add.max(1e-6),
            ours.1.p99 - direct.1.p99,
            lite.1.p99 - direct.1.p99,
        );
    }
    for (name, one, many) in &results {
        if one.n == 0 || many.n == 0 {
            println!("warning: {name} completed no requests");
        }
    }
}
