//! apply, the lifecycle commands and watch against real supervisors and sandboxes (root).
//! Each test has its own NEMOCLAW_HOME and sandbox names, and stops what it started.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "a test stops loudly at the first broken step"
)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod git_support;
use git_support::git;

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests start real sandboxes (user, mount, pid and net namespaces, cgroups): run them as root"
    );
}

struct Env {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    src: PathBuf,
    names: Vec<String>,
}

impl Env {
    fn new() -> Env {
        require_root();
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let src = tmp.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        Env {
            _tmp: tmp,
            home,
            src,
            names: Vec::new(),
        }
    }

    fn nemoclaw(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_nemoclaw"))
            .args(args)
            .env("NEMOCLAW_HOME", &self.home)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Writes a blueprint whose agent writes a marker into its state and sleeps.
    fn blueprint(&mut self, name: &str, marker: &str, extra: &str) -> PathBuf {
        if !self.names.iter().any(|n| n == name) {
            self.names.push(name.to_string());
        }
        let p = self.src.join(format!("{name}.yaml"));
        std::fs::write(
            &p,
            format!(
                "apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: {name}\n  version: 1\nagent:\n  type: command\n  command: /bin/sh\n  args: [\"-c\", \"echo {marker} > /workspace/state/marker; exec sleep 1000\"]\nresources:\n  memory: 64Mi\n  pids: 32\n{extra}"
            ),
        )
        .unwrap();
        p
    }

    fn apply(&self, extra: &[&str]) -> Output {
        let mut args = vec![
            "apply",
            "--auto-approve",
            "--dir",
            self.src.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        self.nemoclaw(&args)
    }

    fn state(&self, name: &str) -> String {
        let st: serde_json::Value =
            serde_json::from_slice(&self.nemoclaw(&["status", "--json"]).stdout).unwrap();
        st["sandboxes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["state"].as_str().unwrap().to_string())
            .unwrap_or_else(|| "absent".into())
    }

    fn marker(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.home.join("state").join(name).join("marker"))
            .ok()
            .map(|s| s.trim().to_string())
    }

    fn supervisor_pid(&self, name: &str) -> Option<i32> {
        std::fs::read_to_string(self.home.join("run").join(name).join("supervisor.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = self.nemoclaw(&["stop", n]);
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn apply_runs_the_agent_and_a_second_apply_is_a_no_op() {
    let mut env = Env::new();
    env.blueprint("ap-one", "v1", "");
    let o = env.apply(&[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("Apply complete: 1 changes applied."),
        "{}",
        text(&o)
    );
    assert_eq!(env.state("ap-one"), "running");
    wait_until("the agent's marker", Duration::from_secs(20), || {
        env.marker("ap-one").as_deref() == Some("v1")
    });
    let t = Instant::now();
    let o = env.apply(&[]);
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "No changes. Sandboxes match the blueprints.\n"
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "a no-op apply is fast ({:?})",
        t.elapsed()
    );
}

#[test]
fn replace_on_agent_change_and_destroy_keeps_state() {
    let mut env = Env::new();
    env.blueprint("ap-two", "v1", "");
    assert!(env.apply(&[]).status.success());
    wait_until("v1 marker", Duration::from_secs(20), || {
        env.marker("ap-two").as_deref() == Some("v1")
    });
    let pid = env.supervisor_pid("ap-two");
    env.blueprint("ap-two", "v2", "");
    let o = env.apply(&[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("-/+ replace ap-two (restart)"),
        "{}",
        text(&o)
    );
    wait_until("v2 marker", Duration::from_secs(20), || {
        env.marker("ap-two").as_deref() == Some("v2")
    });
    assert_ne!(
        env.supervisor_pid("ap-two"),
        pid,
        "a new supervisor runs the new blueprint"
    );
    let o = env.nemoclaw(&["destroy", "ap-two"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(env.state("ap-two"), "absent");
    assert_eq!(env.marker("ap-two").as_deref(), Some("v2"), "state is kept");
    // Gone from the inventory, so apply creates it again (no adoption, no leftovers).
    assert!(
        text(&env.nemoclaw(&["plan", "--dir", env.src.to_str().unwrap()]))
            .contains("+ create ap-two")
    );
}

#[test]
fn saved_plan_applies_once_and_stale_plans_are_refused() {
    let mut env = Env::new();
    env.blueprint("ap-saved", "v1", "");
    let file = env.src.parent().unwrap().join("plan.json");
    let f = file.to_str().unwrap();
    assert!(env
        .nemoclaw(&["plan", "--dir", env.src.to_str().unwrap(), "-o", f])
        .status
        .success());
    let o = env.nemoclaw(&["apply", f]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(env.state("ap-saved"), "running");
    // The same plan again: the inventory moved on since it was made.
    let o = env.nemoclaw(&["apply", f]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("is stale: the deployed sandboxes changed"),
        "{}",
        text(&o)
    );
    // A plan made, then the blueprint edited: stale too.
    assert!(env
        .nemoclaw(&["plan", "--dir", env.src.to_str().unwrap(), "-o", f])
        .status
        .success());
    env.blueprint("ap-saved", "v2", "");
    let o = env.nemoclaw(&["apply", f]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("is stale: the blueprints changed"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_second_apply_waits_for_the_lock_and_names_its_holder() {
    let mut env = Env::new();
    env.blueprint("ap-lock", "v1", "");
    std::fs::create_dir_all(env.home.join("run")).unwrap();
    let held = nemoclaw::home::FileLock::acquire(
        &env.home.join("run/apply.lock"),
        "nemoclaw apply",
        Duration::ZERO,
    )
    .unwrap();
    let o = env.apply(&["--lock-timeout", "300ms"]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(
        t.contains(&format!(
            "is locked by process {} (nemoclaw apply)",
            std::process::id()
        )),
        "{t}"
    );
    assert_eq!(t.lines().count(), 1, "one line: {t}");
    drop(held);
    assert!(env.apply(&[]).status.success());
}

#[test]
fn stop_is_respected_until_start() {
    let mut env = Env::new();
    env.blueprint("ap-stop", "v1", "");
    assert!(env.apply(&[]).status.success());
    assert!(env.nemoclaw(&["stop", "ap-stop"]).status.success());
    assert_eq!(env.state("ap-stop"), "stopped");
    let o = env.apply(&[]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "No changes. Sandboxes match the blueprints.\n",
        "apply never restarts what the user stopped"
    );
    assert!(env.nemoclaw(&["start", "ap-stop"]).status.success());
    assert_eq!(env.state("ap-stop"), "running");
}

#[test]
fn kill_9_of_apply_and_of_a_supervisor_converge_on_the_next_apply() {
    let mut env = Env::new();
    for n in ["ap-k1", "ap-k2", "ap-k3"] {
        env.blueprint(n, n, "");
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_nemoclaw"))
        .args([
            "apply",
            "--auto-approve",
            "--parallel",
            "1",
            "--dir",
            env.src.to_str().unwrap(),
        ])
        .env("NEMOCLAW_HOME", &env.home)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(60));
    let _ = child.kill();
    let _ = child.wait();
    // A supervisor killed too, if one was up.
    if let Some(pid) = env.supervisor_pid("ap-k1") {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let o = env.apply(&[]);
    assert!(o.status.success(), "{}", text(&o));
    for n in ["ap-k1", "ap-k2", "ap-k3"] {
        assert_eq!(env.state(n), "running", "{n}");
        wait_until("marker", Duration::from_secs(20), || {
            env.marker(n).as_deref() == Some(n)
        });
    }
    assert_eq!(
        String::from_utf8_lossy(&env.apply(&[]).stdout),
        "No changes. Sandboxes match the blueprints.\n"
    );
}

struct Watch {
    child: Child,
    log: PathBuf,
}

impl Watch {
    fn start(env: &Env, extra: &[&str]) -> Watch {
        let log = env.src.parent().unwrap().join("watch.log");
        let mut args = vec!["watch", "--resync", "1s"];
        args.extend_from_slice(extra);
        let child = Command::new(env!("CARGO_BIN_EXE_nemoclaw"))
            .args(&args)
            .env("NEMOCLAW_HOME", &env.home)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let w = Watch { child, log };
        w.wait_for("\"event\":\"reconcile-done\"", 1);
        w
    }

    fn lines(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for(&self, needle: &str, count: usize) {
        wait_until(needle, Duration::from_secs(15), || {
            self.lines().matches(needle).count() >= count
        });
    }

    fn stop(mut self) -> String {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "watch exits cleanly on SIGTERM");
        let l = self.lines();
        assert!(l.contains("\"event\":\"watch-stop\""), "{l}");
        l
    }
}

#[test]
fn watch_follows_edits_keeps_the_last_good_version_and_repairs_drift() {
    let mut env = Env::new();
    env.blueprint("wa-one", "v1", "");
    let w = Watch::start(&env, &["--dir", env.src.to_str().unwrap()]);
    assert_eq!(env.state("wa-one"), "running");
    // An edit is applied.
    env.blueprint("wa-one", "v2", "");
    wait_until("v2 marker", Duration::from_secs(10), || {
        env.marker("wa-one").as_deref() == Some("v2")
    });
    // An invalid edit changes nothing: the last good version keeps running.
    let pid = env.supervisor_pid("wa-one");
    std::fs::write(env.src.join("wa-one.yaml"), "apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata: {name: wa-one, version: 1}\nagent: {type: command}\n").unwrap();
    w.wait_for("reconcile-invalid", 1);
    assert_eq!(env.supervisor_pid("wa-one"), pid);
    assert_eq!(env.state("wa-one"), "running");
    env.blueprint("wa-one", "v2", "");
    // A dead sandbox (its supervisor killed) is restarted by the periodic resync.
    let pid = env.supervisor_pid("wa-one").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("a new supervisor", Duration::from_secs(10), || {
        env.supervisor_pid("wa-one").is_some_and(|p| p != pid) && env.state("wa-one") == "running"
    });
    // Suspended: an edit is not applied.
    env.blueprint("wa-one", "v3", "suspend: true\n");
    w.wait_for("\"trigger\":\"file-change\"", 3);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        env.marker("wa-one").as_deref(),
        Some("v2"),
        "suspended blueprints are left alone"
    );
    // A deleted blueprint is kept without prune.
    std::fs::remove_file(env.src.join("wa-one.yaml")).unwrap();
    w.wait_for("\"trigger\":\"file-change\"", 4);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(env.state("wa-one"), "running");
    let log = w.stop();
    assert_eq!(
        env.state("wa-one"),
        "running",
        "sandboxes keep running after watch exits"
    );
    assert!(log.contains("\"sinceChangeMs\""), "{log}");
}

#[test]
fn watch_with_prune_destroys_deleted_blueprints() {
    let mut env = Env::new();
    env.blueprint("wp-keep", "k", "");
    env.blueprint("wp-gone", "g", "");
    let w = Watch::start(&env, &["--prune", "--dir", env.src.to_str().unwrap()]);
    assert_eq!(env.state("wp-gone"), "running");
    std::fs::remove_file(env.src.join("wp-gone.yaml")).unwrap();
    wait_until("wp-gone destroyed", Duration::from_secs(10), || {
        env.state("wp-gone") == "absent"
    });
    assert_eq!(env.state("wp-keep"), "running");
    w.stop();
}

#[test]
fn watch_follows_new_commits_of_a_git_source() {
    let mut env = Env::new();
    env.blueprint("wg-one", "c1", "");
    git(&env.src, &["init", "-q", "-b", "main"]);
    git(&env.src, &["add", "."]);
    git(&env.src, &["commit", "-q", "-m", "c1"]);
    let url = format!("file://{}", env.src.display());
    let w = Watch::start(
        &env,
        &["--git", &url, "--ref", "main", "--interval", "300ms"],
    );
    wait_until("c1 marker", Duration::from_secs(20), || {
        env.marker("wg-one").as_deref() == Some("c1")
    });
    env.blueprint("wg-one", "c2", "");
    git(&env.src, &["commit", "-q", "-am", "c2"]);
    wait_until("c2 marker", Duration::from_secs(10), || {
        env.marker("wg-one").as_deref() == Some("c2")
    });
    let st: serde_json::Value =
        serde_json::from_slice(&env.nemoclaw(&["status", "--json"]).stdout).unwrap();
    assert_eq!(
        st["sandboxes"][0]["commit"].as_str().unwrap().len(),
        40,
        "the commit id is recorded"
    );
    w.stop();
}

#[test]
fn a_network_change_is_applied_in_place_without_restarting_the_agent() {
    let mut env = Env::new();
    // The agent probes TCP port 25 on an address in 198.18.0.0/15 (reserved for benchmarks):
    // the connection never leaves the sandbox's sealed netns. Unblocked, the gateway's
    // transparent listener accepts it; blocked, the fence refuses it at once.
    let probe = "import socket, time\\nwhile True:\\n    s = socket.socket(); s.settimeout(2)\\n    try:\\n        s.connect(('198.18.0.9', 25)); r = 'accepted'\\n    except OSError as e:\\n        r = 'refused' if e.errno == 111 else str(e.errno)\\n    s.close()\\n    open('/workspace/state/probe.tmp', 'w').write(r)\\n    __import__('os').replace('/workspace/state/probe.tmp', '/workspace/state/probe')\\n    time.sleep(0.1)\\n";
    let write = |env: &mut Env, blocked: &str| {
        env.names.push("ap-net".into());
        std::fs::write(
            env.src.join("ap-net.yaml"),
            format!("apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: ap-net\n  version: 1\nagent:\n  type: command\n  command: /usr/bin/python3\n  args: [\"-c\", \"{probe}\"]\nnetwork:\n  egress:\n    blockedPorts: [{blocked}]\n"),
        )
        .unwrap();
    };
    let probe_result = |env: &Env| {
        std::fs::read_to_string(env.home.join("state/ap-net/probe")).unwrap_or_default()
    };
    write(&mut env, "23");
    let o = env.apply(&[]);
    assert!(o.status.success(), "{}", text(&o));
    wait_until(
        "the probe is accepted by the gateway",
        Duration::from_secs(20),
        || probe_result(&env) == "accepted",
    );
    let supervisor = env.supervisor_pid("ap-net");
    let agent: serde_json::Value =
        serde_json::from_slice(&env.nemoclaw(&["status", "--json"]).stdout).unwrap();
    let agent_pid = agent["sandboxes"][0]["pid"].clone();
    write(&mut env, "23, 25");
    let o = env.apply(&[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("~ update ap-net in place (hot reload, no restart)"),
        "{}",
        text(&o)
    );
    wait_until(
        "the probe is refused by the fence",
        Duration::from_secs(20),
        || probe_result(&env) == "refused",
    );
    let after: serde_json::Value =
        serde_json::from_slice(&env.nemoclaw(&["status", "--json"]).stdout).unwrap();
    assert_eq!(env.supervisor_pid("ap-net"), supervisor, "same supervisor");
    assert_eq!(
        after["sandboxes"][0]["pid"], agent_pid,
        "same agent: nothing restarted"
    );
    assert_eq!(after["sandboxes"][0]["restarts"], 0);
}
