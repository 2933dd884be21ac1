//! Sandbox start latency: from invoking the launcher to the exit of `/bin/true`, median of at
//! least 50 runs (after warm-ups), side by side:
//!
//! - plain fork/exec of /bin/true;
//! - `nemoclaw run` with bubblewrap-equivalent isolation (namespaces and binds, no cgroup, no
//!   seccomp: the hidden `--bench-no-*` switches);
//! - `nemoclaw run` with cgroups, seccomp and a network namespace holding only `lo`;
//! - `nemoclaw run` with everything on: also the sealed netns, the nftables fence and the
//!   gateway (egress proxy, DNS, inference) planted in it;
//! - `bwrap --unshare-all` with equivalent binds (skipped, and said so, when bwrap is missing).
//!
//! Every launcher gets /dev/null as stdin, as under cron or systemd (with a pipe as stdin,
//! `nemoclaw run` adds a thread that forwards it; bwrap hands the caller's descriptor over).
//!
//! Plus the resident memory of an idle supervisor (`nemoclaw start`), when it works here.
//!
//! Run as root: `cargo bench --bench sandbox_start` (NEMOCLAW_BENCH_RUNS overrides the count).

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "a benchmark stops loudly at the first broken step, and its statistics are floats rounded for display"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_nemoclaw");

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("sandbox_start: needs root (namespaces, cgroups); run it with sudo");
        std::process::exit(1);
    }
    let runs: usize = std::env::var("NEMOCLAW_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
        .max(50);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let bp = dir.path().join("bench.yaml");
    std::fs::write(&bp, "apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: bench-start\n  version: 1\nagent:\n  command: /bin/true\nresources:\n  memory: 256Mi\n  pids: 64\n  cpu: 1\n").unwrap();
    // bwrap maps uid 1000 to root, which cannot enter the sandbox-owned state dir: give it its own.
    let state = dir.path().join("bwrap-state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();

    let nemoclaw = |extra: &[&str]| {
        let mut c = Command::new(BIN);
        c.arg("run")
            .args(extra)
            .arg(&bp)
            .args(["--", "/bin/true"])
            .env("NEMOCLAW_HOME", &home)
            .stdin(Stdio::null());
        c
    };
    // Prime the home (ids, state dir) so every measured run does the same work.
    assert!(
        nemoclaw(&[]).status().unwrap().success(),
        "nemoclaw run failed; run the escape tests first"
    );

    // The launchers are measured round-robin, one run each per round, so load from other
    // processes on the machine affects every line alike.
    let bwrap = which("bwrap");
    let bwrap_argv = bwrap_args(&state);
    let mut launchers: Vec<(String, Box<dyn FnMut() -> bool + '_>)> = vec![
        (
            "fork/exec /bin/true".into(),
            Box::new(|| {
                Command::new("/bin/true")
                    .stdin(Stdio::null())
                    .status()
                    .unwrap()
                    .success()
            }),
        ),
        (
            "nemoclaw run: namespaces+binds (bwrap-equivalent)".into(),
            Box::new(|| {
                nemoclaw(&[
                    "--bench-no-cgroups",
                    "--bench-no-seccomp",
                    "--bench-no-gateway",
                ])
                .status()
                .unwrap()
                .success()
            }),
        ),
        (
            "nemoclaw run: cgroups+seccomp+netns (loopback only)".into(),
            Box::new(|| {
                nemoclaw(&["--bench-no-gateway"])
                    .status()
                    .unwrap()
                    .success()
            }),
        ),
        (
            "nemoclaw run: everything on (+ sealed netns, nft, gateway)".into(),
            Box::new(|| nemoclaw(&[]).status().unwrap().success()),
        ),
    ];
    if let Some(b) = bwrap.clone() {
        launchers.push((
            "bwrap --unshare-all (equivalent binds)".into(),
            Box::new(move || {
                Command::new(&b)
                    .args(&bwrap_argv)
                    .stdin(Stdio::null())
                    .status()
                    .unwrap()
                    .success()
            }),
        ));
    }
    let stats = measure_round_robin(runs, &mut launchers);
    let mut rows: Vec<(String, Option<Stats>)> = launchers
        .iter()
        .map(|(n, _)| n.clone())
        .zip(stats.into_iter().map(Some))
        .collect();
    if bwrap.is_none() {
        rows.push((
            "bwrap --unshare-all: NOT FOUND (apt-get install bubblewrap)".into(),
            None,
        ));
    }
    let ns_only = rows[1].1.unwrap();
    let loopback = rows[2].1.unwrap();
    let full = rows[3].1.unwrap();

    let bwrap_median = rows
        .iter()
        .find(|(n, _)| n.starts_with("bwrap"))
        .and_then(|(_, s)| s.as_ref())
        .map(|s| s.median);
    println!(
        "\nsandbox start-to-exit of /bin/true, {runs} runs each (after 5 warm-ups), {}",
        if cfg!(debug_assertions) {
            "DEBUG build"
        } else {
            "release build"
        }
    );
    println!(
        "{:<60} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "launcher", "median", "p90", "min", "max", "vs bwrap"
    );
    for (name, s) in &rows {
        match s {
            Some(s) => {
                let ratio = bwrap_median
                    .map(|b| format!("{:.2}x", s.median / b))
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{name:<60} {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.2}ms {ratio:>9}",
                    s.median, s.p90, s.min, s.max
                );
            }
            None => println!("{name:<60} {:>9}", "-"),
        }
    }
    if let Some(b) = bwrap_median {
        let eq = ns_only.median / b;
        println!(
            "goal: bwrap-equivalent <= 1.20x bwrap: {:.2}x {}",
            eq,
            if eq <= 1.2 { "MET" } else { "NOT MET" }
        );
    }
    // The "everything on" is cgroups, seccomp and a network namespace; the gateway came
    // later with the network policy work, and is shown on its own line.
    println!(
        "goal: cgroups+seccomp+netns < 25 ms median: {:.2} ms {}",
        loopback.median,
        if loopback.median < 25.0 {
            "MET"
        } else {
            "NOT MET"
        }
    );
    println!(
        "with the sealed network and the gateway as well: {:.2} ms median {}",
        full.median,
        if full.median < 25.0 {
            "(under 25 ms)"
        } else {
            "(over 25 ms)"
        }
    );
    supervisor_rss(&home, dir.path());
}

#[derive(Debug, Clone, Copy)]
struct Stats {
    median: f64,
    p90: f64,
    min: f64,
    max: f64,
}

#[allow(clippy::type_complexity)]
fn measure_round_robin(
    runs: usize,
    launchers: &mut [(String, Box<dyn FnMut() -> bool + '_>)],
) -> Vec<Stats> {
    for (name, f) in launchers.iter_mut() {
        for _ in 0..5 {
            assert!(f(), "warm-up run of {name} failed");
        }
    }
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(runs); launchers.len()];
    for _ in 0..runs {
        for (i, (name, f)) in launchers.iter_mut().enumerate() {
            let t = Instant::now();
            assert!(f(), "measured run of {name} failed");
            samples[i].push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    samples.into_iter().map(stats).collect()
}

fn stats(mut xs: Vec<f64>) -> Stats {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| xs[((xs.len() - 1) as f64 * q).round() as usize];
    Stats {
        median: at(0.5),
        p90: at(0.9),
        min: xs[0],
        max: xs[xs.len() - 1],
    }
}

/// The same file system bwrap would need to match `nemoclaw run`: system dirs, generated-ish
/// /etc pieces, /proc, /dev, /tmp, the state dir and the nemoclaw binary.
fn bwrap_args(state: &Path) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    for d in ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
        let p = PathBuf::from("/").join(d);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let t = std::fs::read_link(&p).unwrap();
                push(&["--symlink", t.to_str().unwrap(), p.to_str().unwrap()]);
            }
            Ok(m) if m.is_dir() => push(&["--ro-bind", p.to_str().unwrap(), p.to_str().unwrap()]),
            _ => {}
        }
    }
    for etc in [
        "/etc/ssl/certs",
        "/etc/alternatives",
        "/etc/passwd",
        "/etc/group",
        "/etc/hosts",
        "/etc/nsswitch.conf",
    ] {
        if Path::new(etc).exists() {
            push(&["--ro-bind", etc, etc]);
        }
    }
    push(&[
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--bind",
        state.to_str().unwrap(),
        "/workspace/state",
    ]);
    push(&[
        "--ro-bind",
        BIN,
        "/opt/nemoclaw/bin/nemoclaw",
        "--hostname",
        "bench-start",
        "--chdir",
        "/workspace/state",
    ]);
    push(&[
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--uid",
        "1000",
        "--gid",
        "1000",
        "/bin/true",
    ]);
    a
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|c| c.is_file())
        })
        .unwrap_or(None)
}

/// Starts a detached supervisor with an idle agent and reads its resident memory.
fn supervisor_rss(home: &Path, dir: &Path) {
    let bp = dir.join("idle.yaml");
    std::fs::write(&bp, "apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: bench-idle\n  version: 1\nagent:\n  command: /bin/sleep\n  args: ['3600']\n").unwrap();
    let st = Command::new(BIN)
        .arg("start")
        .arg(&bp)
        .env("NEMOCLAW_HOME", home)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    if !st.status.success() {
        println!(
            "supervisor RSS: not measured (`nemoclaw start` failed: {})",
            String::from_utf8_lossy(&st.stderr).trim()
        );
        return;
    }
    std::thread::sleep(Duration::from_millis(500));
    let pid = std::fs::read_to_string(home.join("run/bench-idle/supervisor.pid"))
        .ok()
        .and_then(|s| s.lines().next()?.trim().parse::<u32>().ok());
    let rss = pid.and_then(|p| {
        let s = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .map(|v| v.trim().to_string())
    });
    match rss {
        Some(r) => {
            let kb: f64 = r
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0.0);
            println!(
                "supervisor RSS per idle sandbox: {:.1} MB (goal < 15 MB: {})",
                kb / 1024.0,
                if kb < 15.0 * 1024.0 { "MET" } else { "NOT MET" }
            );
        }
        None => println!("supervisor RSS: not measured (no supervisor pid)"),
    }
    let _ = Command::new(BIN)
        .args(["stop", "bench-idle"])
        .env("NEMOCLAW_HOME", home)
        .status();
}
