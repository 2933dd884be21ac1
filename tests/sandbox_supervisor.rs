//! The supervisor for real: `nemoclaw start/stop/exec`, restart policy, kill -9 recovery, and
//! the control protocol.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "a test stops loudly at the first broken step"
)]

mod sandbox_support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nemoclaw::home::Home;
use nemoclaw::supervisor::protocol::State;
use sandbox_support::*;

fn agent_bp(lab: &Lab, name: &str, script: &str, extra: &str) -> std::path::PathBuf {
    let p = lab.dir.path().join(format!("{name}.yaml"));
    let yaml = format!(
        "apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: {name}\n  version: 1\nagent:\n  command: /bin/sh\n  args: ['-c', {}]\n  env:\n    GREETING: hello-from-blueprint\n{extra}",
        serde_json::to_string(script).unwrap()
    );
    std::fs::write(&p, yaml).unwrap();
    p
}

fn supervisor_alive(lab: &Lab, name: &str) -> bool {
    nemoclaw::supervisor::is_running(&Home::at(&lab.home), name)
}

const LOOP: &str = "echo started; echo x >> /workspace/state/starts; trap 'echo got-term; exit 0' TERM; while true; do sleep 0.1; done";

#[test]
fn start_exec_stop_keeps_state_and_logs_and_leaves_nothing() {
    let lab = Lab::new();
    let bp = agent_bp(
        &lab,
        "sup-basic",
        LOOP,
        "lifecycle:\n  stopTimeout: 5s\nresources:\n  memory: 128Mi\n",
    );
    let o = nc(&lab, &["start", bp.to_str().unwrap()]);
    o.ok();
    assert!(o.stdout.contains("started `sup-basic`"), "{}", o.stdout);
    let s = status(&lab, "sup-basic").unwrap();
    assert_eq!(s.state, State::Running);
    let netns = std::fs::read_link(format!("/proc/{}/ns/net", s.pid.unwrap())).unwrap();
    let host_netns = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(
        netns, host_netns,
        "the sandbox has its own network namespace"
    );
    assert!(s.memory_bytes.is_some_and(|m| m > 0));
    // Starting again is a no-op.
    let starts = lab.state("sup-basic").join("starts");
    wait_for(
        "the agent to write its state",
        Duration::from_secs(5),
        || starts.exists(),
    );
    assert!(nc(&lab, &["start", "sup-basic"])
        .ok()
        .stdout
        .contains("already running"));

    let o = nc(
        &lab,
        &[
            "exec",
            "sup-basic",
            "--",
            "/bin/sh",
            "-c",
            "id -u; echo $GREETING; ls /proc | grep -cE '^[0-9]+$'; cat /workspace/state/starts",
        ],
    );
    o.ok();
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines[0], "1000");
    assert_eq!(lines[1], "hello-from-blueprint");
    assert!(
        lines[2].parse::<u32>().unwrap() < 10,
        "exec sees only the sandbox's processes"
    );
    assert_eq!(lines[3], "x");
    assert_eq!(
        nc(
            &lab,
            &["exec", "sup-basic", "--", "/bin/sh", "-c", "exit 9"]
        )
        .code,
        9
    );
    nc(
        &lab,
        &[
            "exec",
            "sup-basic",
            "--",
            "mount",
            "-t",
            "tmpfs",
            "none",
            "/tmp",
        ],
    )
    .failed();
    let o = nc(&lab, &["exec", "sup-basic", "--", "no-such-tool"]);
    assert!(
        o.stderr.contains("not found inside sandbox"),
        "{}",
        o.stderr
    );

    let o = nc(&lab, &["stop", "sup-basic"]);
    o.ok();
    assert!(!supervisor_alive(&lab, "sup-basic"));
    let log = std::fs::read_to_string(lab.home.join("logs/sup-basic/agent.log")).unwrap();
    assert!(
        log.contains("started") && log.contains("got-term"),
        "graceful SIGTERM: {log}"
    );
    assert_eq!(
        std::fs::read_to_string(lab.state("sup-basic").join("starts")).unwrap(),
        "x\n"
    );
    assert!(cgroup_dirs("sup-basic").is_empty());
    assert!(pids_in_cgroup_named("sup-basic").is_empty());
    assert!(!lab.home.join("run/sup-basic/control.sock").exists());
    // The sandbox's network namespace is gone: no process on the host is in it any more.
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(ns) = std::fs::read_link(e.path().join("ns/net")) {
            assert_ne!(
                ns,
                netns,
                "process {:?} is still in the sandbox's netns",
                e.file_name()
            );
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(lab.home.to_str().unwrap()));
    assert!(nc(&lab, &["exec", "sup-basic", "--", "true"])
        .stderr
        .contains("not running"));
    assert!(nc(&lab, &["stop", "sup-basic"])
        .ok()
        .stdout
        .contains("not running"));
}

#[test]
fn stop_kills_an_agent_that_ignores_sigterm_after_the_timeout() {
    let lab = Lab::new();
    let bp = agent_bp(
        &lab,
        "sup-stubborn",
        "trap '' TERM; touch /workspace/state/ready; while true; do sleep 0.1; done",
        "lifecycle:\n  stopTimeout: 1s\n",
    );
    nc(&lab, &["start", bp.to_str().unwrap()]).ok();
    let ready = lab.state("sup-stubborn").join("ready");
    wait_for(
        "the agent to ignore SIGTERM",
        Duration::from_secs(5),
        || ready.exists(),
    );
    let t = Instant::now();
    nc(&lab, &["stop", "sup-stubborn"]).ok();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert!(pids_in_cgroup_named("sup-stubborn").is_empty());
    assert!(!supervisor_alive(&lab, "sup-stubborn"));
}

#[test]
fn crash_loop_backs_off_then_gives_up() {
    let lab = Lab::new();
    let bp = agent_bp(
        &lab,
        "sup-crash",
        "echo x >> /workspace/state/starts; sleep 0.05; exit 3",
        "lifecycle:\n  restart: on-failure\n  maxRestarts: 2\n  crashWindow: 1m\n",
    );
    let _ = nc(&lab, &["start", bp.to_str().unwrap()]);
    let t = Instant::now();
    wait_for("give-up", Duration::from_secs(20), || {
        status(&lab, "sup-crash").is_some_and(|s| s.state == State::Failed)
    });
    let s = status(&lab, "sup-crash").unwrap();
    assert_eq!(s.last_exit, Some(3));
    assert_eq!(s.restarts, 2);
    assert!(
        s.message
            .as_deref()
            .unwrap_or("")
            .contains("gave up after 3 crashes"),
        "{s:?}"
    );
    // Backoff: 200 ms then 400 ms between the three starts.
    assert!(
        t.elapsed() >= Duration::from_millis(550),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        std::fs::read_to_string(lab.state("sup-crash").join("starts")).unwrap(),
        "x\nx\nx\n"
    );
    assert!(
        supervisor_alive(&lab, "sup-crash"),
        "the supervisor stays up to report the failure"
    );
    nc(&lab, &["stop", "sup-crash"]).ok();
    assert!(!supervisor_alive(&lab, "sup-crash"));
}

#[test]
fn killed_supervisor_leaves_state_and_next_start_cleans_up() {
    let lab = Lab::new();
    let bp = agent_bp(&lab, "sup-kill9", LOOP, "");
    nc(&lab, &["start", bp.to_str().unwrap()]).ok();
    let starts = lab.state("sup-kill9").join("starts");
    wait_for(
        "the agent to write its state",
        Duration::from_secs(5),
        || starts.exists(),
    );
    let pid = status(&lab, "sup-kill9").unwrap().supervisor_pid as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("the supervisor to die", Duration::from_secs(5), || {
        !supervisor_alive(&lab, "sup-kill9")
    });
    // The sandbox dies with its supervisor (parent-death signal); the state is intact.
    wait_for("the sandbox to die", Duration::from_secs(5), || {
        pids_in_cgroup_named("sup-kill9").is_empty()
    });
    assert_eq!(
        std::fs::read_to_string(lab.state("sup-kill9").join("starts")).unwrap(),
        "x\n"
    );
    assert!(
        !cgroup_dirs("sup-kill9").is_empty(),
        "the killed supervisor could not clean its cgroup"
    );
    // A stale pid in the pid file is never trusted: the lock is free.
    let o = nc(&lab, &["start", "sup-kill9"]);
    o.ok();
    assert_eq!(status(&lab, "sup-kill9").unwrap().state, State::Running);
    wait_for("the second start", Duration::from_secs(5), || {
        std::fs::read_to_string(&starts).unwrap().len() == 4
    });
    nc(&lab, &["stop", "sup-kill9"]).ok();
    assert_eq!(
        std::fs::read_to_string(lab.state("sup-kill9").join("starts")).unwrap(),
        "x\nx\n"
    );
    assert!(cgroup_dirs("sup-kill9").is_empty());
}

#[test]
fn control_protocol_requires_hello_and_a_known_version() {
    let lab = Lab::new();
    let bp = agent_bp(&lab, "sup-proto", LOOP, "");
    nc(&lab, &["start", bp.to_str().unwrap()]).ok();
    let sock = lab.home.join("run/sup-proto/control.sock");
    let talk = |lines: &[&str]| -> Vec<serde_json::Value> {
        let s = UnixStream::connect(&sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        let mut out = Vec::new();
        for l in lines {
            if writeln!(w, "{l}").is_err() {
                break;
            }
            let mut resp = String::new();
            if !matches!(r.read_line(&mut resp), Ok(n) if n > 0) {
                break;
            }
            out.push(serde_json::from_str(&resp).unwrap());
        }
        out
    };
    let r = talk(&[
        r#"{"id":1,"op":"status"}"#,
        r#"{"id":2,"op":"hello","version":1}"#,
    ]);
    assert_eq!(
        r.len(),
        1,
        "the connection is closed after a request without hello"
    );
    assert_eq!(r[0]["ok"], false);
    let r = talk(&[r#"{"id":1,"op":"hello","version":99}"#]);
    assert_eq!(r[0]["ok"], false);
    assert!(r[0]["error"].as_str().unwrap().contains("version"));
    let r = talk(&[
        r#"{"id":"a","op":"hello","version":1}"#,
        r#"{"id":"b","op":"status"}"#,
        r#"{"id":"c","op":"nonsense"}"#,
        r#"{"id":"d","op":"reload_policy"}"#,
    ]);
    assert_eq!(r[0]["version"], 1);
    assert_eq!(r[1]["id"], "b");
    assert_eq!(r[1]["status"]["state"], "running");
    assert_eq!(r[2]["ok"], false);
    assert_eq!(r[3]["ok"], true);
    nc(&lab, &["stop", "sup-proto"]).ok();
}

#[test]
fn sandboxes_run_side_by_side() {
    let lab = Lab::new();
    let a = agent_bp(&lab, "sup-side-a", LOOP, "");
    let b = agent_bp(&lab, "sup-side-b", LOOP, "");
    nc(&lab, &["start", a.to_str().unwrap()]).ok();
    nc(&lab, &["start", b.to_str().unwrap()]).ok();
    let (sa, sb) = (
        status(&lab, "sup-side-a").unwrap(),
        status(&lab, "sup-side-b").unwrap(),
    );
    assert_ne!(sa.supervisor_pid, sb.supervisor_pid);
    nc(&lab, &["stop", "sup-side-a"]).ok();
    assert_eq!(status(&lab, "sup-side-b").unwrap().state, State::Running);
    assert!(pids_in_cgroup_named("sup-side-a").is_empty());
    assert!(!pids_in_cgroup_named("sup-side-b").is_empty());
    nc(&lab, &["stop", "sup-side-b"]).ok();
}

#[test]
fn exec_health_check_reports_health() {
    let lab = Lab::new();
    let bp = agent_bp(
        &lab,
        "sup-health",
        LOOP,
        "lifecycle:\n  healthCheck:\n    exec: ['/bin/sh', '-c', 'test -f /workspace/state/healthy']\n    interval: 200ms\n    timeout: 2s\n    retries: 2\n",
    );
    nc(&lab, &["start", bp.to_str().unwrap()]).ok();
    wait_for("unhealthy", Duration::from_secs(10), || {
        status(&lab, "sup-health").and_then(|s| s.healthy) == Some(false)
    });
    std::fs::write(lab.state("sup-health").join("healthy"), "").unwrap();
    wait_for("healthy", Duration::from_secs(10), || {
        status(&lab, "sup-health").and_then(|s| s.healthy) == Some(true)
    });
    nc(&lab, &["stop", "sup-health"]).ok();
}

#[test]
fn http_health_check_dials_inside_the_sandbox() {
    let lab = Lab::new();
    let server = "import http.server, socketserver\nclass H(http.server.BaseHTTPRequestHandler):\n    def do_GET(self):\n        self.send_response(200 if self.path == '/ok' else 503); self.end_headers()\n    def log_message(self, *a): pass\nsocketserver.TCPServer(('127.0.0.1', 8080), H).serve_forever()";
    let p = lab.dir.path().join("sup-http.yaml");
    let yaml = format!(
        "apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: sup-http\n  version: 1\nagent:\n  command: {PY}\n  args: ['-c', {}]\nlifecycle:\n  healthCheck:\n    http: {{port: 8080, path: /ok}}\n    interval: 200ms\n    retries: 1\n",
        serde_json::to_string(server).unwrap()
    );
    std::fs::write(&p, yaml).unwrap();
    nc(&lab, &["start", p.to_str().unwrap()]).ok();
    wait_for("healthy over HTTP", Duration::from_secs(10), || {
        status(&lab, "sup-http").and_then(|s| s.healthy) == Some(true)
    });
    // Nothing listens on the host's 127.0.0.1:8080 because of this sandbox.
    assert!(std::net::TcpStream::connect("127.0.0.1:8080").is_err());
    nc(&lab, &["stop", "sup-http"]).ok();
}

#[test]
fn disk_cap_stops_the_agent_with_a_clear_status() {
    let lab = Lab::new();
    let bp = agent_bp(
        &lab,
        "sup-disk",
        "head -c 2097152 /dev/zero > /workspace/state/big; while true; do sleep 0.1; done",
        "resources:\n  disk: 1Mi\nlifecycle:\n  stopTimeout: 1s\n",
    );
    nc(&lab, &["start", bp.to_str().unwrap()]).ok();
    wait_for("the disk cap", Duration::from_secs(15), || {
        status(&lab, "sup-disk").is_some_and(|s| s.state == State::Failed)
    });
    let s = status(&lab, "sup-disk").unwrap();
    assert!(
        s.message
            .as_deref()
            .unwrap_or("")
            .contains("resources.disk"),
        "{s:?}"
    );
    assert!(s.pid.is_none() && pids_in_cgroup_named("sup-disk").is_empty());
    nc(&lab, &["stop", "sup-disk"]).ok();
    assert!(lab.state("sup-disk").join("big").exists(), "state is kept");
}
