//! The real agents' start, side by side with their peer from the same run: from
//! `nemoclaw start` to the agent healthy (warm install cache, warm state: the second and later
//! starts of an applied sandbox), against the same agent started bare (its own command, the
//! same install and a copy of the same state, no sandbox and no gateway, in an empty network
//! namespace so that, as in the sandbox, its calls out fail at once) until its port answers.
//! Also the memory nemoclaw adds next to the agent, after the agent has answered one turn: the
//! supervisor's RSS (it holds the gateway — network policy and inference router — in its
//! threads), and the PSS of the supervisor and the sandbox's init together (their code pages
//! are one file, counted once).
//!
//! NemoClaw's users report 90–180 s from `nemoclaw onboard` to a ready sandbox
//! (`../shared/reference/peers-2026.md`); that figure is quoted, not measured here (its
//! container images cannot be fetched on this machine).
//!
//! Median of 5 starts each (NEMOCLAW_BENCH_RUNS overrides). Run as root:
//! `cargo bench --bench agents` (installs OpenClaw and Hermes into the shared cache
//! `/var/cache/nemoclaw-test/agents` first if they are not there: npm and PyPI).

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    reason = "a benchmark stops loudly at the first broken step, and its statistics are floats rounded for display"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_nemoclaw");
const CACHE: &str = "/var/cache/nemoclaw-test/agents";

/// One agent: its example, its port, and how to start it bare from its install.
struct Agent {
    example: &'static str,
    name: &'static str,
    port: u16,
    /// The bare command, relative to the install dir, and its environment (`{state}` is the
    /// state copy, `{dir}` the install).
    bare: &'static [&'static str],
    bare_env: &'static [(&'static str, &'static str)],
    install: &'static str,
    /// One turn through `nemoclaw exec NAME -- ...`.
    turn: &'static [&'static str],
}

const AGENTS: [Agent; 2] = [
    Agent {
        example: "hermes.yaml",
        name: "ncbench-hermes",
        port: 8642,
        bare: &[
            "{dir}/venv/bin/python",
            "-m",
            "hermes_cli.main",
            "gateway",
            "run",
        ],
        bare_env: &[
            ("HERMES_HOME", "{state}/hermes"),
            ("HERMES_DISABLE_LAZY_INSTALLS", "1"),
            ("API_SERVER_ENABLED", "1"),
            ("API_SERVER_HOST", "127.0.0.1"),
            ("API_SERVER_PORT", "18642"),
            (
                "API_SERVER_KEY",
                "nemoclaw-bench-api-server-key-0123456789abcdef",
            ),
        ],
        install: "hermes/0.19.0",
        turn: &["hermes", "-z", "hello"],
    },
    Agent {
        example: "openclaw.yaml",
        name: "ncbench-openclaw",
        port: 18789,
        bare: &[
            "{dir}/node/bin/node",
            "{dir}/node_modules/openclaw/openclaw.mjs",
            "gateway",
            "run",
            "--port",
            "18790",
        ],
        bare_env: &[
            ("OPENCLAW_STATE_DIR", "{state}/openclaw"),
            (
                "OPENCLAW_GATEWAY_TOKEN",
                "nemoclaw-bench-gateway-token-0123456789abcdef",
            ),
            ("NODE_COMPILE_CACHE", "{state}/.cache/node-compile-cache"),
            ("OPENCLAW_NO_AUTO_UPDATE", "1"),
            ("OPENCLAW_OFFLINE", "1"),
            ("DO_NOT_TRACK", "1"),
        ],
        install: "openclaw/2026.9.6",
        turn: &[
            "openclaw",
            "agent",
            "--agent",
            "main",
            "--message",
            "hello",
            "--json",
        ],
    },
];

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("agents: needs root (real sandboxes); run it with sudo");
        std::process::exit(1);
    }
    let runs: usize = std::env::var("NEMOCLAW_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(3);
    let dir = tempfile::tempdir().unwrap();
    println!("agent     nemoclaw start→healthy   bare start→port   ratio   supervisor RSS   supervisor+init PSS");
    for a in &AGENTS {
        let r = measure(dir.path(), a, runs);
        println!(
            "{:<9} {:>10.2} s {:>20.2} s {:>8.2}x {:>11.1} MB {:>16.1} MB",
            a.name.trim_start_matches("ncbench-"),
            r.nemoclaw.as_secs_f64(),
            r.bare.as_secs_f64(),
            r.nemoclaw.as_secs_f64() / r.bare.as_secs_f64(),
            r.rss_kb as f64 / 1024.0,
            r.pss_kb as f64 / 1024.0
        );
    }
    println!("(NemoClaw, reported by its users: 90-180 s to a ready sandbox; not measurable here)");
}

struct Result {
    nemoclaw: Duration,
    bare: Duration,
    rss_kb: u64,
    pss_kb: u64,
}

fn nc(home: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(BIN)
        .args(args)
        .env("NEMOCLAW_HOME", home)
        .env("NEMOCLAW_AGENT_CACHE", CACHE)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nemoclaw {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn healthy(home: &Path, name: &str) -> bool {
    let out = Command::new(BIN)
        .args(["status", name, "--json"])
        .env("NEMOCLAW_HOME", home)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["sandboxes"][0]["health"] == "healthy"
}

fn wait(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "{what} after {limit:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The example under a bench name, applied once (install, first start), then `runs` timed
/// stop/start cycles, then `runs` bare starts.
fn measure(tmp: &Path, a: &Agent, runs: usize) -> Result {
    let home = tmp.join(a.name);
    let src = tmp.join(format!("{}-src", a.name));
    std::fs::create_dir_all(&src).unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mock");
    let text = std::fs::read_to_string(example.join(a.example)).unwrap();
    let text = text
        .replace("name: openclaw-mock", &format!("name: {}", a.name))
        .replace("name: hermes-mock", &format!("name: {}", a.name))
        .replace(
            "    - hostPort: 18789\n      port: 18789\n",
            "    - hostPort: 28789\n      port: 18789\n",
        );
    std::fs::write(src.join(a.example), text).unwrap();
    std::fs::copy(example.join("replies.yaml"), src.join("replies.yaml")).unwrap();
    let _destroy = Destroy(&home, a.name);
    nc(
        &home,
        &[
            "apply",
            "--dir",
            src.to_str().unwrap(),
            "--auto-approve",
            "--wait",
            "180s",
        ],
    );
    wait("healthy after apply", Duration::from_secs(180), || {
        healthy(&home, a.name)
    });
    eprintln!("agents: {} applied; timing {runs} starts", a.name);
    let mut starts = Vec::new();
    for _ in 0..runs {
        nc(&home, &["stop", a.name]);
        let t = Instant::now();
        nc(&home, &["start", a.name, "--wait", "120s"]);
        wait("healthy", Duration::from_secs(120), || {
            healthy(&home, a.name)
        });
        starts.push(t.elapsed());
    }
    let mut exec = vec!["exec", a.name, "--"];
    exec.extend_from_slice(a.turn);
    nc(&home, &exec);
    let (rss_kb, pss_kb) = memory_kb(&home, a.name);
    nc(&home, &["stop", a.name]);
    let state = tmp.join(format!("{}-bare-state", a.name));
    copy_tree(&home.join("state").join(a.name), &state);
    remove_liveness_markers(&state);
    let bare: Vec<Duration> = (0..runs).map(|_| bare_start(a, &state)).collect();
    Result {
        nemoclaw: median(starts),
        bare: median(bare),
        rss_kb,
        pss_kb,
    }
}

/// Destroys the bench's sandbox when dropped, also when a step panics (a sandbox left running
/// in a deleted home would collide with the next run's).
struct Destroy<'a>(&'a Path, &'a str);

impl Drop for Destroy<'_> {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .args(["destroy", self.1, "--delete-state"])
            .env("NEMOCLAW_HOME", self.0)
            .output();
    }
}

/// The supervisor's RSS, and the PSS of the supervisor and the sandbox's init (its child), in
/// KiB, from `/proc/PID/smaps_rollup`.
fn memory_kb(home: &Path, name: &str) -> (u64, u64) {
    let pid_file = home.join("run").join(name).join("supervisor.pid");
    let text = std::fs::read_to_string(&pid_file).expect("the supervisor's pid file");
    let sup = text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let children =
        std::fs::read_to_string(format!("/proc/{sup}/task/{sup}/children")).unwrap_or_default();
    let field = |pid: &str, key: &str| -> u64 {
        let rollup =
            std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).expect("smaps_rollup");
        rollup
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    let init_pss: u64 = children.split_whitespace().map(|c| field(c, "Pss:")).sum();
    (field(&sup, "Rss:"), field(&sup, "Pss:") + init_pss)
}

/// The agent's own command on the host in an empty network namespace (only `lo`, as the
/// sandbox has, and a resolver on loopback), timed until its port answers there, then stopped.
fn bare_start(a: &Agent, state: &Path) -> Duration {
    let dir = PathBuf::from(CACHE).join(a.install);
    let fill = |s: &str| {
        s.replace("{dir}", dir.to_str().unwrap())
            .replace("{state}", state.to_str().unwrap())
    };
    let argv: Vec<String> = a.bare.iter().map(|s| fill(s)).collect();
    let port = if a.port == 8642 { 18642 } else { 18790 };
    eprintln!("agents: bare {}", argv.join(" "));
    // sh inside the namespaces: lo up, a resolver on loopback (refusing at once, as the
    // sandbox's gateway does, instead of the host's unreachable one timing out), the agent in
    // the background, poll its port with curl, print READY, stop it.
    let resolv = state.join("bare-resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.0.1\n").unwrap();
    let script = format!(
        "ip link set lo up; mount --bind {} /etc/resolv.conf; \
         \"$@\" >/dev/null 2>&1 & pid=$!; \
         until curl -s -o /dev/null http://127.0.0.1:{port}/; do sleep 0.025; done; \
         echo READY; kill $pid; wait $pid 2>/dev/null; exit 0",
        resolv.display()
    );
    let t = Instant::now();
    let out = Command::new("unshare")
        .args([
            "-n",
            "-m",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            &script,
            "sh",
        ])
        .args(&argv)
        .envs(a.bare_env.iter().map(|(k, v)| (*k, fill(v))))
        .env("HOME", state)
        .env(
            "PATH",
            format!("{}/node/bin:/usr/bin:/bin:/usr/sbin:/sbin", dir.display()),
        )
        .stdin(Stdio::null())
        .output()
        .expect("unshare runs");
    let took = t.elapsed();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("READY"),
        "the bare agent never answered: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

/// The copy's lock and state files of the stopped sandboxed run (`gateway.lock`,
/// `gateway_state.json`, `*.pid`): their pids are the sandbox's pid namespace's, so a bare
/// start on the host would take them for a live gateway and wait for it.
fn remove_liveness_markers(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() && !p.is_symlink() {
            remove_liveness_markers(&p);
        } else if name.ends_with(".lock") || name.ends_with(".pid") || name == "gateway_state.json"
        {
            std::fs::remove_file(&p).unwrap();
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    let ok = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a {} {}", from.display(), to.display());
}
