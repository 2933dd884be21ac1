//! Running the real agents (OpenClaw, Hermes) in tests: the example blueprints under a test's
//! own name, the shared install cache, and waiting for health.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::sandbox_support::*;

/// Installs are kept here between test runs (and CI runs on one machine), one directory per
/// plugin and version, so only a cold machine downloads the agents.
pub const AGENT_CACHE: &str = "/var/cache/nemoclaw-test/agents";

/// One real agent at a time: each takes a GB of memory and most of two cores to start.
pub static ONE_AGENT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `nemoclaw ARGS` with the shared agent cache, killed after `secs`.
pub fn nc_for(lab: &Lab, secs: u32, args: &[&str]) -> Out {
    from_cmd(
        Command::new("timeout")
            .args(["-s", "KILL", &secs.to_string(), BIN])
            .args(args)
            .env("NEMOCLAW_HOME", &lab.home)
            .env("NEMOCLAW_AGENT_CACHE", AGENT_CACHE),
    )
}

/// A loopback port free right now (for a host port the test forwards).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The repository's `examples/mock/<file>` under the sandbox name `name`, in a source dir of
/// the lab, with `replies` as its mock's replies file and its forwarded host port (if any)
/// moved to `host_port`.
pub fn example_source(lab: &Lab, file: &str, name: &str, replies: &str, host_port: u16) -> PathBuf {
    let example = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/mock")
        .join(file);
    let text = std::fs::read_to_string(&example).unwrap();
    let original = text
        .lines()
        .find_map(|l| l.strip_prefix("  name: "))
        .unwrap()
        .to_string();
    let mut out = String::new();
    for line in text.lines() {
        let line = line.replace(&format!("name: {original}"), &format!("name: {name}"));
        let line = match line.split_once("- hostPort: ") {
            Some((indent, _)) => format!("{indent}- hostPort: {host_port}"),
            None => line,
        };
        out.push_str(&line);
        out.push('\n');
    }
    let src = lab.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join(format!("{name}.yaml")), out).unwrap();
    std::fs::write(src.join("replies.yaml"), replies).unwrap();
    src
}

/// Waits until `status --json` says the sandbox is healthy.
pub fn wait_healthy(lab: &Lab, name: &str, timeout: Duration) {
    wait_for(&format!("{name} healthy"), timeout, || {
        let out = nc(lab, &["status", name, "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
        v["sandboxes"][0]["health"] == "healthy"
    });
}

/// Lines of `logs/<name>/<file>` (empty when missing).
pub fn log_lines(lab: &Lab, name: &str, file: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(lab.home.join("logs").join(name).join(file))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Egress lines of every setup sandbox of the lab's home.
pub fn setup_egress_lines(lab: &Lab) -> usize {
    let Ok(rd) = std::fs::read_dir(lab.home.join("logs")) else {
        return 0;
    };
    rd.flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("nemoclaw-setup-")
        })
        .map(|e| {
            std::fs::read_to_string(e.path().join("egress.jsonl"))
                .unwrap_or_default()
                .lines()
                .count()
        })
        .sum()
}

/// Every file under `dir` holds no `needle`.
pub fn tree_lacks(dir: &Path, needle: &str) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return true;
    };
    rd.flatten().all(|e| {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => tree_lacks(&p, needle),
            Ok(t) if t.is_file() => std::fs::read(&p)
                .map(|b| !b.windows(needle.len()).any(|w| w == needle.as_bytes()))
                .unwrap_or(true),
            _ => true,
        }
    })
}
