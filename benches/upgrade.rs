//! Upgrade cost, side by side with its peers from the same run:
//!
//! 1. snapshot + migrate + commit of a 100 MB state dir of 1,000 JSON files, with one script
//!    that rewrites every file (read_json, change a key, write_json), against `cp -a` of the
//!    same tree (the copy any careful operator makes by hand before touching state);
//! 2. the downtime of a real upgrade of the demo agent through `nemoclaw apply` (old agent
//!    stopped → new agent healthy, as apply reports it), against `nemoclaw restart` of the same
//!    sandbox (stop + start, no snapshot, no migration).
//!
//! Median of 5 runs each (NEMOCLAW_BENCH_RUNS overrides). Run as root:
//! `cargo bench --bench upgrade`.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "a benchmark stops loudly at the first broken step, and its statistics are floats rounded for display"
)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nemoclaw::blueprint::ScriptLimits;
use nemoclaw::migrate::engine::{self, RunInput, Step};
use nemoclaw::migrate::snapshot::{self, Kind, Request};

const BIN: &str = env!("CARGO_BIN_EXE_nemoclaw");
const FILES: usize = 1_000;
const FILE_BYTES: usize = 100 * 1024;

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("upgrade: needs root (sandboxes for the downtime figure); run it with sudo");
        std::process::exit(1);
    }
    let runs: usize = std::env::var("NEMOCLAW_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(3);
    let dir = tempfile::tempdir().unwrap();
    state_migration(dir.path(), runs);
    downtime(dir.path(), runs);
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

/// 1,000 JSON session files of ~100 KB each.
fn make_state(state: &Path) {
    std::fs::create_dir_all(state.join("sessions")).unwrap();
    let turn =
        serde_json::json!({"role": "assistant", "text": "x".repeat(200), "ts": 1_765_000_000});
    let turns = FILE_BYTES / serde_json::to_string(&turn).unwrap().len();
    for i in 0..FILES {
        let doc =
            serde_json::json!({"id": i, "model": "mock-1", "turns": vec![turn.clone(); turns]});
        std::fs::write(
            state.join(format!("sessions/{i:04}.json")),
            serde_json::to_vec(&doc).unwrap(),
        )
        .unwrap();
    }
}

const SCRIPT: &str = r#"for p in state.list("sessions/*.json") {
    let s = state.read_json(p);
    s.modelId = s.model;
    s.remove("model");
    state.write_json(p, s);
}"#;

fn state_migration(root: &Path, runs: usize) {
    let script = root.join("v2.rhai");
    std::fs::write(&script, SCRIPT).unwrap();
    let steps = [Step { version: 2, script }];
    let limits = ScriptLimits::default();
    let (mut ours, mut cp) = (Vec::new(), Vec::new());
    let (mut snap_t, mut script_t) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let state = root.join(format!("state-{run}"));
        make_state(&state);
        // The state of a deployed agent is on disk already; only the upgrade's own writes count.
        nix::unistd::sync();
        let bytes = dir_bytes(&state);
        let peer_dst = root.join(format!("cp-{run}"));
        let t = Instant::now();
        let ok = Command::new("cp")
            .arg("-a")
            .arg(&state)
            .arg(&peer_dst)
            .status()
            .unwrap();
        assert!(ok.success());
        cp.push(t.elapsed());
        std::fs::remove_dir_all(&peer_dst).unwrap();

        let snaps = root.join(format!("snapshots-{run}"));
        let t = Instant::now();
        snapshot::create(
            &snaps,
            &state,
            &Request {
                version: 1,
                kind: Kind::Upgrade,
                attachments: &[],
                sqlite_backup: false,
            },
        )
        .unwrap();
        snap_t.push(t.elapsed());
        let t_script = Instant::now();
        let input = RunInput {
            name: "bench",
            from: 1,
            to: 2,
            steps: &steps,
            limits: &limits,
        };
        engine::run(&state, &input, &|_| {}).unwrap();
        script_t.push(t_script.elapsed());
        snapshot::prune(&snaps, Kind::Upgrade, 3).unwrap();
        ours.push(t.elapsed());
        if run == 0 {
            println!("state: {FILES} JSON files, {:.1} MB", bytes as f64 / 1e6);
        }
        std::fs::remove_dir_all(&state).unwrap();
        std::fs::remove_dir_all(&snaps).unwrap();
    }
    let (o, p) = (median(ours), median(cp));
    println!(
        "snapshot + migrate + commit: {} (median of {runs}; snapshot {}, script {}); cp -a of the same tree: {}; ratio {:.2}x",
        secs(o),
        secs(median(snap_t)),
        secs(median(script_t)),
        secs(p),
        o.as_secs_f64() / p.as_secs_f64()
    );
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("sessions"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn nemoclaw(home: &Path, args: &[&str]) -> String {
    let o = Command::new(BIN)
        .args(args)
        .env("NEMOCLAW_HOME", home)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "nemoclaw {args:?}: {text}");
    text
}

fn write_blueprint(src: &Path, version: u32) {
    std::fs::write(
        src.join("bench-upgrade.yaml"),
        format!("apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: bench-upgrade\n  version: {version}\nagent:\n  type: demo\ninference:\n  backends:\n    - name: mock\n      kind: mock\n  allowedModels: [mock-1]\nresources:\n  memory: 128Mi\n  pids: 64\nmigrations:\n  dir: migrations\n"),
    )
    .unwrap();
    std::fs::write(
        src.join(format!("migrations/v{version}.rhai")),
        "state.append_text(\"upgrades\", `${to}\\n`);",
    )
    .unwrap();
}

/// The downtime apply reports for an upgrade: "(downtime 0.42s: ...".
fn reported_downtime(out: &str) -> Duration {
    let at = out.find("downtime ").expect("apply reports the downtime") + "downtime ".len();
    let secs: f64 = out[at..].split('s').next().unwrap().parse().unwrap();
    Duration::from_secs_f64(secs)
}

fn downtime(root: &Path, runs: usize) {
    let home = root.join("home");
    let src = root.join("src");
    std::fs::create_dir_all(src.join("migrations")).unwrap();
    std::fs::remove_file(src.join("migrations/v1.rhai")).ok();
    std::fs::write(
        src.join("bench-upgrade.yaml"),
        "apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: bench-upgrade\n  version: 1\nagent:\n  type: demo\ninference:\n  backends:\n    - name: mock\n      kind: mock\n  allowedModels: [mock-1]\nresources:\n  memory: 128Mi\n  pids: 64\nmigrations:\n  dir: migrations\n",
    )
    .unwrap();
    let dir = src.to_str().unwrap();
    nemoclaw(&home, &["apply", "--auto-approve", "--dir", dir]);
    let (mut ours, mut restart) = (Vec::new(), Vec::new());
    for run in 0..runs {
        write_blueprint(&src, 2 + run as u32);
        let out = nemoclaw(&home, &["apply", "--auto-approve", "--dir", dir]);
        ours.push(reported_downtime(&out));
        let t = Instant::now();
        nemoclaw(&home, &["restart", "bench-upgrade"]);
        restart.push(t.elapsed());
    }
    nemoclaw(&home, &["stop", "bench-upgrade"]);
    let (o, p) = (median(ours), median(restart));
    println!(
        "upgrade downtime of the demo agent (stopped → healthy): {} (median of {runs}); `nemoclaw restart` of the same sandbox: {}; ratio {:.2}x",
        secs(o),
        secs(p),
        o.as_secs_f64() / p.as_secs_f64()
    );
}
