#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "tests"
)]
//! Checkpoints for real (as root): the sandbox's cgroup frozen and thawed, a consistent
//! checkpoint of an agent that writes SQLite and JSON without pause, and the newest checkpoint
//! restored once after a crash loop.

mod sandbox_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nemoclaw::home::Home;
use nemoclaw::sandbox::cgroups::{self, Controller, FreezeControl, SandboxCgroup};
use nemoclaw::supervisor::protocol::State;
use sandbox_support::*;

/// A blueprint whose agent is `command` with `args`, plus `extra` top-level YAML, alone in a
/// directory of its own (for `apply --dir`).
fn agent_bp(lab: &Lab, name: &str, command: &str, script: &str, extra: &str) -> PathBuf {
    let dir = lab.dir.path().join("blueprints");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{name}.yaml"));
    let yaml = format!(
        "apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: {name}\n  version: 1\nagent:\n  command: {command}\n  args: ['-c', {}]\n{extra}",
        serde_json::to_string(script).unwrap()
    );
    std::fs::write(&p, yaml).unwrap();
    p
}

/// The sandbox's cgroup on this host and the file that says whether it is frozen.
fn freezer_state(name: &str) -> (FreezeControl, PathBuf) {
    let cg = SandboxCgroup::locate(&cgroups::host_layout().unwrap(), name).unwrap();
    let (v, dir) = cg.dir_for(Controller::Freezer).unwrap();
    let ctl = FreezeControl::of(v);
    (ctl, dir.join(ctl.state_file))
}

fn thawed(name: &str) -> bool {
    let (ctl, file) = freezer_state(name);
    ctl.settled(&std::fs::read_to_string(file).unwrap(), false)
}

/// When the test fails: prints the sandbox's agent and supervisor logs, and stops it (a
/// supervisor left running would fight the next run over the sandbox's cgroup).
struct LogsOnFailure<'a>(&'a Lab, &'a str);

impl Drop for LogsOnFailure<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let home = Home::at(&self.0.home);
            for log in [home.agent_log(self.1), home.supervisor_log(self.1)] {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                eprintln!("--- {}\n{text}", log.display());
            }
            let _ = nc(self.0, &["stop", self.1]);
        }
    }
}

fn read_count(p: &Path) -> u64 {
    std::fs::read_to_string(p)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// An agent that counts in `state/count` every few milliseconds.
const COUNTER: &str =
    "n=0; trap 'exit 0' TERM; while true; do n=$((n+1)); echo $n > /workspace/state/count; sleep 0.01; done";

#[test]
fn freeze_stops_the_agent_and_thaw_resumes_it() {
    let lab = Lab::new();
    let name = "ckpt-freeze";
    let _logs = LogsOnFailure(&lab, name);
    let bp = agent_bp(&lab, name, "/bin/sh", COUNTER, "");
    nc(&lab, &["start", bp.to_str().unwrap()]).ok();
    let count = lab.state(name).join("count");
    wait_for("the agent to count", Duration::from_secs(10), || {
        read_count(&count) > 3
    });
    let cg = SandboxCgroup::locate(&cgroups::host_layout().unwrap(), name).unwrap();
    cg.freeze().unwrap();
    let (ctl, file) = freezer_state(name);
    assert!(ctl.settled(&std::fs::read_to_string(&file).unwrap(), true));
    let at_freeze = read_count(&count);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        read_count(&count),
        at_freeze,
        "a frozen agent writes nothing"
    );
    cg.thaw().unwrap();
    assert!(thawed(name));
    wait_for("the agent to count again", Duration::from_secs(5), || {
        read_count(&count) > at_freeze
    });

    // A supervisor killed while its sandbox is frozen: the next start still cleans up (a
    // frozen v1 task dies of SIGKILL only once thawed).
    let supervisor = status(&lab, name).unwrap().supervisor_pid as i32;
    cg.freeze().unwrap();
    let home = Home::at(&lab.home);
    kill(supervisor);
    wait_for("the supervisor to die", Duration::from_secs(10), || {
        !nemoclaw::supervisor::is_running(&home, name)
    });
    nc(&lab, &["start", name]).ok();
    let restarted_at = read_count(&count);
    wait_for("the new agent to count", Duration::from_secs(10), || {
        read_count(&count) != restarted_at
    });
    nc(&lab, &["stop", name]).ok();
    assert!(cgroup_dirs(name).is_empty(), "{:?}", cgroup_dirs(name));
}

/// Inserts one row into each of two tables per transaction (WAL) and rewrites doc.json through
/// a temporary file and a rename, without pause.
const WRITER: &str = r#"
import json, os, sqlite3
os.chdir('/workspace/state')
db = sqlite3.connect('agent.db', isolation_level=None)
db.execute('pragma journal_mode=wal')
db.execute('pragma synchronous=normal')
db.execute('create table if not exists a (i integer primary key, v text)')
db.execute('create table if not exists b (i integer primary key, v text)')
n = 0
while True:
    n += 1
    db.execute('begin')
    db.execute('insert into a (v) values (?)', ('a' * 200,))
    db.execute('insert into b (v) values (?)', ('b' * 200,))
    db.execute('commit')
    with open('doc.json.tmp', 'w') as f:
        json.dump({'n': n, 'pad': 'z' * 4000}, f)
    os.rename('doc.json.tmp', 'doc.json')
"#;

/// `checkpoint ID: N files, B bytes, agent frozen for F ms` → ID.
fn checkpoint_id(stdout: &str) -> String {
    let rest = stdout.strip_prefix("checkpoint ").unwrap();
    assert!(rest.contains(" bytes, agent frozen for "), "{stdout}");
    rest.split(':').next().unwrap().to_string()
}

/// Checks checkpoint `dir` and returns its row count: the database passes its integrity check
/// (on a copy: opening it in place could add `-shm` files to the checkpoint), both tables have
/// the same rows, doc.json parses, and the two agree as one moment of the agent's loop (frozen
/// after transaction n, before or after its doc.json: a copy made while the agent ran would
/// find the database and the file far apart).
fn verify(dir: &Path) -> i64 {
    let (a, b, n) = read_checkpoint(dir);
    let at = dir.display();
    assert_eq!(a, b, "{at}: both tables of every transaction, or neither");
    let n = i64::try_from(n).unwrap();
    assert!(a == n || a == n + 1, "{at}: {a} rows but doc.json at {n}");
    a
}

/// Rows in tables a and b of the database in checkpoint `dir`, after its integrity check, and
/// the `n` of its doc.json.
fn read_checkpoint(dir: &Path) -> (i64, i64, u64) {
    let state = dir.join("state");
    let scratch = tempfile::tempdir().unwrap();
    let db_path = scratch.path().join("agent.db");
    std::fs::copy(state.join("agent.db"), &db_path).unwrap();
    for sibling in ["agent.db-wal", "agent.db-shm"] {
        if state.join(sibling).exists() {
            std::fs::copy(state.join(sibling), scratch.path().join(sibling)).unwrap();
        }
    }
    let db = rusqlite::Connection::open(&db_path).unwrap();
    let check: String = db
        .query_row("pragma integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok", "{}", dir.display());
    let count = |t: &str| -> i64 {
        db.query_row(&format!("select count(*) from {t}"), [], |r| r.get(0))
            .unwrap()
    };
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("doc.json")).unwrap())
            .unwrap_or_else(|e| panic!("{}: doc.json: {e}", dir.display()));
    (count("a"), count("b"), doc["n"].as_u64().unwrap())
}

fn checkpoint_events(lab: &Lab, name: &str) -> usize {
    std::fs::read_to_string(Home::at(&lab.home).supervisor_log(name))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"checkpoint\"") && l.contains("frozen_ms"))
        .count()
}

#[test]
fn checkpoints_of_an_agent_writing_without_pause_are_consistent() {
    let lab = Lab::new();
    let name = "ckpt-writes";
    let _logs = LogsOnFailure(&lab, name);
    let bp = agent_bp(
        &lab,
        name,
        PY,
        WRITER,
        "lifecycle:\n  checkpoint: {every: 1s, keep: 3}\n",
    );
    nc(&lab, &["start", bp.to_str().unwrap()]).ok();
    let doc = lab.state(name).join("doc.json");
    wait_for("the agent to write", Duration::from_secs(10), || {
        doc.exists()
    });
    let snapshots = Home::at(&lab.home).snapshots(name);
    let mut last_rows = 0;
    for _ in 0..3 {
        // On a loaded machine the agent may not have run between two checkpoints: wait until
        // it has written past the last one, so each checkpoint has something new to hold.
        wait_for("the agent to write more", Duration::from_secs(20), || {
            read_rows(&lab, name) > last_rows
        });
        let o = nc(&lab, &["checkpoint", name]);
        o.ok();
        let id = checkpoint_id(&o.stdout);
        let rows = verify(&snapshots.join(&id));
        assert!(
            rows > last_rows,
            "{id}: the agent kept writing ({rows} rows)"
        );
        last_rows = rows;
        // A periodic checkpoint (every second here) may hold the sandbox frozen for a moment
        // right now; what must hold is that nothing leaves it frozen.
        wait_for(
            &format!("thawed after {id}"),
            Duration::from_secs(3),
            || thawed(name),
        );
    }
    // The periodic ones too, pruned to the newest three.
    wait_for("periodic checkpoints", Duration::from_secs(20), || {
        checkpoint_events(&lab, name) >= 6
    });
    let o = nc(&lab, &["checkpoint", name, "--json"]);
    let info: serde_json::Value = serde_json::from_str(&o.ok().stdout).unwrap();
    assert!(info["frozen_ms"].as_u64().is_some(), "{info}");
    let s = status(&lab, name).unwrap();
    assert_eq!(s.state, State::Running);
    assert_eq!(s.restarts, 0);
    let deployed = std::fs::read(Home::at(&lab.home).deployed_blueprint(name)).unwrap();
    let before = read_rows(&lab, name);
    wait_for(
        "the agent to go on writing",
        Duration::from_secs(10),
        || read_rows(&lab, name) > before,
    );
    nc(&lab, &["stop", name]).ok();

    let kept: Vec<PathBuf> = std::fs::read_dir(&snapshots)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(kept.len(), 3, "lifecycle.checkpoint.keep: {kept:?}");
    for dir in kept {
        verify(&dir);
        assert_eq!(std::fs::read(dir.join("blueprint.yaml")).unwrap(), deployed);
    }
}

/// Rows in table a of the live database (read through `nemoclaw exec`, never from the host).
fn read_rows(lab: &Lab, name: &str) -> i64 {
    let o = nc(
        lab,
        &[
            "exec",
            name,
            "--",
            PY,
            "-c",
            "import sqlite3; print(sqlite3.connect('/workspace/state/agent.db').execute('select count(*) from a').fetchone()[0])",
        ],
    );
    o.stdout.trim().parse().unwrap_or(0)
}

/// Starts only with a config.json that says `"ok": true` (written on the first start).
const PICKY: &str = "cd /workspace/state; [ -e config.json ] || printf '{\"ok\": true}\\n' > config.json; grep -q '\"ok\": true' config.json || exit 3; trap 'exit 0' TERM; while true; do sleep 0.1; done";

/// Waits until the agent has been running for `stable` with the same pid.
fn wait_running_steadily(lab: &Lab, name: &str, stable: Duration) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "{name} never ran steadily");
        let Some(pid) = status(lab, name)
            .filter(|s| s.state == State::Running)
            .and_then(|s| s.pid)
        else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        std::thread::sleep(stable);
        if status(lab, name).is_some_and(|s| s.state == State::Running && s.pid == Some(pid)) {
            return pid;
        }
    }
}

fn kill(pid: i32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

#[test]
fn a_crash_loop_restores_the_newest_checkpoint_once() {
    let lab = Lab::new();
    let name = "ckpt-crashloop";
    let _logs = LogsOnFailure(&lab, name);
    let bp = agent_bp(
        &lab,
        name,
        "/bin/sh",
        PICKY,
        "lifecycle:\n  restart: on-failure\n  maxRestarts: 2\n  crashWindow: 1m\n  restoreOnCrashLoop: true\n",
    );
    // Deployed by `apply`, so `nemoclaw status` lists it.
    let dir = bp.parent().unwrap().to_str().unwrap();
    nc(&lab, &["apply", "--auto-approve", "--dir", dir]).ok();
    let pid = wait_running_steadily(&lab, name, Duration::from_millis(300));
    let id = checkpoint_id(&nc(&lab, &["checkpoint", name]).ok().stdout);
    let home = Home::at(&lab.home);
    let checkpoint_state = home.snapshots(name).join(&id).join("state");
    let config = lab.state(name).join("config.json");
    assert_eq!(
        std::fs::read_to_string(checkpoint_state.join("config.json")).unwrap(),
        "{\"ok\": true}\n"
    );

    // Corrupted state, then a crash: every restart fails, the supervisor gives up, restores.
    std::fs::write(&config, "{\"ok\": tr").unwrap();
    kill(pid);
    wait_for("the restore", Duration::from_secs(30), || {
        status(&lab, name).is_some_and(|s| s.note.is_some())
    });
    wait_running_steadily(&lab, name, Duration::from_millis(500));
    let s = status(&lab, name).unwrap();
    let note = format!("restored checkpoint {id} after 3 crashes");
    assert_eq!(s.note.as_deref(), Some(note.as_str()), "{s:?}");
    assert_eq!(s.recent_crashes, 0, "the crash tracker starts afresh");
    assert_eq!(
        nemoclaw::migrate::tree::tree_hash(&lab.state(name)).unwrap(),
        nemoclaw::migrate::tree::tree_hash(&checkpoint_state).unwrap(),
        "the state is the checkpoint's"
    );
    let o = nc(&lab, &["status", name]);
    assert!(
        o.ok().stdout.contains(&format!("{name}: {note}")),
        "{}",
        o.stdout
    );
    let log = std::fs::read_to_string(home.agent_log(name)).unwrap();
    assert!(log.contains(&note), "{log}");
    let events = std::fs::read_to_string(home.supervisor_log(name)).unwrap();
    assert!(events.contains("checkpoint-restored"), "{events}");

    // Once only: a second crash loop gives up for real, the state as the agent left it.
    std::fs::write(&config, "{\"ok\": fa").unwrap();
    kill(status(&lab, name).unwrap().pid.unwrap());
    wait_for("the give-up", Duration::from_secs(30), || {
        status(&lab, name).is_some_and(|s| s.state == State::Failed)
    });
    let s = status(&lab, name).unwrap();
    assert!(
        s.message
            .as_deref()
            .unwrap_or("")
            .contains("gave up after 3 crashes"),
        "{s:?}"
    );
    assert_eq!(s.note.as_deref(), Some(note.as_str()));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "{\"ok\": fa");
    // Only a running agent is checkpointed.
    let o = nc(&lab, &["checkpoint", name]);
    assert!(
        o.failed().stderr.contains("not running (state: Failed)"),
        "{}",
        o.stderr
    );
    nc(&lab, &["stop", name]).ok();
    let o = nc(&lab, &["checkpoint", name]);
    assert!(o.failed().stderr.contains("is not running"), "{}", o.stderr);
}
