//! What the supervisor shows of itself, for real: the gateway's `tracing` warnings reach the
//! supervisor log (and `run`'s stderr), and the http health check probes inside the sandbox
//! without forking the (multi-threaded) supervisor.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "a test stops loudly at the first broken step"
)]

mod sandbox_support;

use std::time::Duration;

use nemoclaw::home::Home;
use sandbox_support::*;

/// A Python agent that asks for a host the default policy denies, through the gateway's
/// proxy, every 200 ms (each refusal is a line for the egress log).
const ASK_DENIED: &str = "import time, urllib.request\nwhile True:\n    try:\n        urllib.request.urlopen('http://denied.example/', timeout=5)\n    except Exception as e:\n        print(e, flush=True)\n    time.sleep(0.2)";

fn python_bp(lab: &Lab, name: &str, script: &str, extra: &str) -> std::path::PathBuf {
    let p = lab.dir.path().join(format!("{name}.yaml"));
    let yaml = format!(
        "apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: {name}\n  version: 1\nagent:\n  command: {PY}\n  args: ['-c', {}]\n{extra}",
        serde_json::to_string(script).unwrap()
    );
    std::fs::write(&p, yaml).unwrap();
    p
}

/// Makes every write to the sandbox's egress log fail (ENOSPC), as on a full disk.
fn egress_log_on_a_full_disk(lab: &Lab, name: &str) {
    let home = Home::at(&lab.home);
    let path = home.logs(name).join(nemoclaw::home::EGRESS_LOG);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("/dev/full", &path).unwrap();
}

#[test]
fn a_gateway_warning_reaches_the_supervisor_log_as_json() {
    let lab = Lab::new();
    let name = "obs-warn";
    egress_log_on_a_full_disk(&lab, name);
    let bp = python_bp(&lab, name, ASK_DENIED, "");
    nc(&lab, &["start", bp.to_str().unwrap()]).ok();
    let log_path = Home::at(&lab.home).supervisor_log(name);
    let mut warning = None;
    wait_for("the egress log warning", Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        warning = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["detail"]["message"] == "writing the egress log");
        warning.is_some()
    });
    nc(&lab, &["stop", name]).ok();
    let w = warning.unwrap();
    assert_eq!(w["sandbox"], name, "{w}");
    assert_eq!(w["event"], "log", "{w}");
    assert!(w["ts"].as_f64().is_some(), "{w}");
    assert_eq!(w["detail"]["level"], "warn", "{w}");
    assert!(
        w["detail"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("No space left")),
        "{w}"
    );
    // The supervisor's own events are in the same file, in the same shape.
    let text = std::fs::read_to_string(&log_path).unwrap();
    let started = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "agent-started")
        .expect("the supervisor's own events");
    assert_eq!(started["sandbox"], name);
    assert!(started["ts"].as_f64().is_some());
}

#[test]
fn a_gateway_warning_reaches_the_terminal_of_run() {
    let lab = Lab::new();
    let name = "obs-run";
    egress_log_on_a_full_disk(&lab, name);
    let bp = lab.blueprint(name, "");
    let out = lab.py(
        &bp,
        "import urllib.request\ntry:\n    urllib.request.urlopen('http://denied.example/', timeout=5)\nexcept Exception as e:\n    print(e)",
    );
    out.ok();
    assert!(out.stdout.contains("403"), "{}", out.stdout);
    assert!(
        out.stderr.contains("WARN") && out.stderr.contains("writing the egress log"),
        "stderr: {}",
        out.stderr
    );
    // Quiet when the filter says so.
    let quiet = from_cmd(
        lab.command(
            &bp,
            &[PY, "-c", "import urllib.request\ntry:\n    urllib.request.urlopen('http://denied.example/', timeout=5)\nexcept Exception as e:\n    print(e)"],
        )
        .env("NEMOCLAW_LOG", "error"),
    );
    quiet.ok();
    assert!(
        !quiet.stderr.contains("writing the egress log"),
        "{}",
        quiet.stderr
    );
}

/// The parent pid of `pid` (field 4 of /proc/PID/stat).
fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn children_of(parent: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| ppid(*p) == Some(parent))
        .collect()
}

#[test]
fn http_health_probe_forks_no_helper_out_of_the_supervisor() {
    let lab = Lab::new();
    let name = "obs-probe";
    // A server that notes each probe, then holds it for a second before answering.
    let server = "import http.server, socketserver, time\nclass H(http.server.BaseHTTPRequestHandler):\n    def do_GET(self):\n        open('/workspace/state/probed', 'a').write('x')\n        time.sleep(1)\n        self.send_response(200); self.end_headers()\n    def log_message(self, *a): pass\nsocketserver.TCPServer(('127.0.0.1', 8080), H).serve_forever()";
    let bp = python_bp(
        &lab,
        name,
        server,
        "lifecycle:\n  healthCheck:\n    http: {port: 8080, path: /}\n    interval: 200ms\n    timeout: 5s\n    retries: 1\n",
    );
    nc(&lab, &["start", bp.to_str().unwrap()]).ok();
    let probed = lab.state(name).join("probed");
    wait_for("a probe in flight", Duration::from_secs(10), || {
        probed.exists()
    });
    // The probe is being held by the server now: nothing but the sandbox itself may be a
    // child of the supervisor (a forked probe helper would be one).
    let s = status(&lab, name).expect("status");
    let extra: Vec<i32> = children_of(s.supervisor_pid as i32)
        .into_iter()
        .filter(|p| Some(*p) != s.pid)
        .collect();
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", s.supervisor_pid))
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|c| c.trim().to_string())
        .collect();
    wait_for(
        "healthy over a slow HTTP answer",
        Duration::from_secs(10),
        || status(&lab, name).and_then(|s| s.healthy) == Some(true),
    );
    nc(&lab, &["stop", name]).ok();
    assert!(
        extra.is_empty(),
        "the supervisor forked {extra:?} for the probe"
    );
    assert!(
        threads.iter().any(|t| t == "health-probe"),
        "the probe runs on a thread of the supervisor: {threads:?}"
    );
}
