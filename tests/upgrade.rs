//! Upgrades with state migrations against real sandboxes and the real binary (root): a chain
//! of versions, failures that roll back byte for byte, runaway scripts, paths that lead out of
//! the state, `kill -9` of apply at each step, unhealthy new versions, the plan's dry run,
//! `rollback` and `snapshots`. Each test has its own home, source and sandbox names.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "a test stops loudly at the first broken step"
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nemoclaw::migrate::tree::tree_hash;

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests start real sandboxes (namespaces, cgroups): run them as root"
    );
}

/// The agent of most tests: notes each start in its state, and on SIGTERM (a graceful stop)
/// writes `stopped-by-term` (a realistic agent that saves state at shutdown; the tests use it
/// to make a script behave differently in the real run than in the plan's dry run).
const AGENT: &str = "echo started >> /workspace/state/starts; trap 'echo yes > /workspace/state/stopped-by-term; exit 0' TERM; while :; do sleep 0.1; done";

struct Env {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    src: PathBuf,
    name: String,
}

impl Env {
    fn new(name: &str) -> Env {
        require_root();
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("migrations")).unwrap();
        Env {
            _tmp: tmp,
            home,
            src,
            name: name.to_string(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_nemoclaw"));
        c.args(args)
            .env("NEMOCLAW_HOME", &self.home)
            .stdin(Stdio::null());
        c
    }

    fn nemoclaw(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Writes the blueprint at `version` with `extra` top-level YAML; `agent` is a shell script,
    /// or `None` for the demo agent.
    fn blueprint(&self, version: u32, agent: Option<&str>, extra: &str) {
        let agent = match agent {
            Some(script) => format!(
                "agent:\n  type: command\n  command: /bin/sh\n  args: [\"-c\", {}]\n",
                serde_json::to_string(script).unwrap()
            ),
            None => "agent:\n  type: demo\ninference:\n  backends:\n    - name: mock\n      kind: mock\n  allowedModels: [mock-1]\n".into(),
        };
        std::fs::write(
            self.src.join(format!("{}.yaml", self.name)),
            format!(
                "apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: {}\n  version: {version}\n{agent}resources:\n  memory: 128Mi\n  pids: 64\nmigrations:\n  dir: migrations\n{extra}",
                self.name
            ),
        )
        .unwrap();
    }

    fn script(&self, version: u32, text: &str) {
        std::fs::write(self.src.join(format!("migrations/v{version}.rhai")), text).unwrap();
    }

    fn apply_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = ["apply", "--auto-approve", "--dir"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(self.src.to_str().unwrap().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    fn apply(&self, extra: &[&str]) -> Output {
        let args = self.apply_args(extra);
        self.nemoclaw(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn spawn_apply(&self) -> Child {
        let args = self.apply_args(&[]);
        self.cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn plan(&self, extra: &[&str]) -> Output {
        let mut args = vec!["plan", "--dir", self.src.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.nemoclaw(&args)
    }

    fn state(&self) -> PathBuf {
        self.home.join("state").join(&self.name)
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.state().join(rel)).unwrap_or_default()
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.state().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn status(&self) -> serde_json::Value {
        let o = self.nemoclaw(&["status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["sandboxes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == self.name.as_str())
            .cloned()
            .unwrap_or_default()
    }

    fn version_and_state(&self) -> (u64, String) {
        let s = self.status();
        (
            s["version"].as_u64().unwrap_or(0),
            s["state"].as_str().unwrap_or("absent").to_string(),
        )
    }

    fn journal_phase(&self) -> Option<String> {
        let text =
            std::fs::read_to_string(self.home.join("run").join(&self.name).join("upgrade.json"))
                .ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v["phase"].as_str().map(String::from)
    }

    /// The state's tree hash, leaving out the files the test agent writes on its own.
    fn state_hash_without_agent_files(&self) -> String {
        let copy = self._tmp.path().join(format!("hash-{}", rand_suffix()));
        copy_dir(&self.state(), &copy);
        for f in ["starts", "stopped-by-term"] {
            let _ = std::fs::remove_file(copy.join(f));
        }
        let h = tree_hash(&copy).unwrap();
        std::fs::remove_dir_all(&copy).unwrap();
        h
    }

    fn snapshots(&self) -> Vec<serde_json::Value> {
        let o = self.nemoclaw(&["snapshots", &self.name, "--json"]);
        assert!(o.status.success(), "{}", text(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.nemoclaw(&["stop", &self.name]);
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn copy_dir(from: &Path, to: &Path) {
    let ok = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "expected success:\n{}", text(&o));
    text(&o)
}

fn failed(o: Output) -> String {
    assert!(!o.status.success(), "expected failure:\n{}", text(&o));
    text(&o)
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn a_chain_of_three_versions_migrates_the_state_at_each_step() {
    let env = Env::new("nct-up-chain");
    env.blueprint(1, None, "");
    ok(env.apply(&[]));
    wait_until(
        "the demo agent's first tick",
        Duration::from_secs(20),
        || env.read("demo-agent.json").contains("runs"),
    );
    env.write("notes.txt", "# groceries\nmilk\n# work\nship v2\n");
    env.write("sessions/a.json", r#"{"model": "mock-1", "id": "a"}"#);

    // v2: split the notes by topic, rename a key in every session.
    env.blueprint(2, None, "");
    env.script(
        2,
        r##"let topic = ""; let files = #{};
for line in state.read_text("notes.txt").split("\n") {
    if line.starts_with("# ") { topic = line.sub_string(2); files[topic] = ""; }
    else if line != "" { files[topic] += line + "\n"; }
}
for t in files.keys() { state.write_text(`notes/${t}.txt`, files[t]); }
state.remove("notes.txt");
for p in state.list("sessions/*.json") {
    let s = state.read_json(p); s.modelId = s.model; s.remove("model"); state.write_json(p, s);
}
print(`v2: ${files.len()} topics`);"##,
    );
    let out = ok(env.apply(&[]));
    assert!(out.contains("upgrade nct-up-chain: done"), "{out}");
    assert!(out.contains("downtime"), "{out}");
    assert_eq!(env.version_and_state(), (2, "running".into()));
    assert_eq!(env.read("notes/groceries.txt"), "milk\n");
    assert_eq!(env.read("notes/work.txt"), "ship v2\n");
    assert!(!env.state().join("notes.txt").exists());
    assert_eq!(
        env.read("sessions/a.json"),
        "{\n  \"id\": \"a\",\n  \"modelId\": \"mock-1\"\n}\n"
    );

    // v3: an SQLite memory built from the notes.
    env.blueprint(3, None, "");
    env.script(
        3,
        r#"let db = state.sqlite("memory.db");
db.execute_batch("CREATE TABLE notes(topic TEXT, body TEXT)");
for p in state.list("notes/*.txt") {
    db.execute("INSERT INTO notes VALUES (?1, ?2)", [p, state.read_text(p)]);
}"#,
    );
    ok(env.apply(&[]));
    assert_eq!(env.version_and_state(), (3, "running".into()));
    let rows = Command::new("python3")
        .arg("-c")
        .arg("import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from notes').fetchone()[0])")
        .arg(env.state().join("memory.db"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&rows.stdout).trim(), "2");
    // The agent's own state survived both upgrades, and what the scripts printed is logged.
    assert!(env.read("demo-agent.json").contains("runs"));
    let log = std::fs::read_to_string(env.home.join("logs/nct-up-chain/upgrade.jsonl")).unwrap();
    assert!(log.contains("v2: 2 topics"), "{log}");
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    assert_eq!(snaps[0]["version"], 1);
    assert_eq!(snaps[1]["version"], 2);
    assert_eq!(
        ok(env.apply(&[])).trim(),
        "No changes. Sandboxes match the blueprints."
    );
}

/// Deploys v1 of the trap agent with `files` in its state, then writes v2 with `script`.
fn deployed_with(env: &Env, files: &[(&str, &str)], script: &str, extra_v2: &str) {
    env.blueprint(1, Some(AGENT), "");
    ok(env.apply(&[]));
    // The agent notes its start on its own time: wait for it, so the state is settled.
    wait_until("the agent's start", Duration::from_secs(20), || {
        !env.read("starts").is_empty()
    });
    for (p, t) in files {
        env.write(p, t);
    }
    env.blueprint(2, Some(AGENT), extra_v2);
    env.script(2, script);
}

#[test]
fn a_script_error_restores_the_state_and_the_old_version_runs_again() {
    let env = Env::new("nct-up-err");
    // Passes the plan's dry run (the agent is running), fails in the real run (stopped).
    deployed_with(
        &env,
        &[("a.json", "{\"n\": 1}\n"), ("dir/b.txt", "keep me\n")],
        r#"state.write_text("dir/b.txt", "half migrated\n");
state.write_json("new.json", #{x: 1});
if state.exists("stopped-by-term") { throw "the old agent saved state at shutdown that this script cannot read"; }"#,
        "",
    );
    let before = env.state_hash_without_agent_files();
    let out = failed(env.apply(&[]));
    assert!(out.contains("rolled back"), "{out}");
    assert!(
        out.contains("v2.rhai:3:"),
        "the error names the script and line: {out}"
    );
    assert_eq!(
        env.state_hash_without_agent_files(),
        before,
        "state restored byte for byte"
    );
    assert_eq!(env.read("dir/b.txt"), "keep me\n");
    assert!(!env.state().join("new.json").exists());
    assert_eq!(env.version_and_state(), (1, "running".into()));
    assert!(
        env.read("starts").lines().count() >= 2,
        "the old version started again"
    );
    // The failed version is held: plan says why, apply leaves it, status shows it.
    let plan = ok(env.plan(&[]));
    assert!(
        plan.contains("upgrade to v2 failed") && plan.contains("--retry"),
        "{plan}"
    );
    assert!(ok(env.apply(&[])).contains("No changes"));
    assert!(env.status()["held"].as_str().unwrap().contains("failed"));
    // --retry plans it again: the restored state holds what the old agent saved at shutdown,
    // so now the dry run already fails and the agent is not even stopped.
    let starts = env.read("starts").lines().count();
    let out = failed(env.apply(&["--retry", "nct-up-err"]));
    assert!(
        out.contains("the dry run of its migrations failed"),
        "{out}"
    );
    assert_eq!(env.read("starts").lines().count(), starts);
    assert_eq!(env.version_and_state(), (1, "running".into()));
}

#[test]
fn runaway_scripts_are_stopped_by_the_limits() {
    let env = Env::new("nct-up-limits");
    deployed_with(
        &env,
        &[("a.txt", "a\n")],
        "loop { }",
        "  limits:\n    operations: 1000000\n",
    );
    // The dry run stops the endless loop by the operations limit: plan refuses, nothing stops.
    let plan = ok(env.plan(&[]));
    assert!(
        plan.contains("refused") && plan.contains("migrations.limits"),
        "{plan}"
    );
    let out = failed(env.apply(&[]));
    assert!(out.contains("refused"), "{out}");
    assert_eq!(env.version_and_state(), (1, "running".into()));
    assert_eq!(
        env.read("starts").lines().count(),
        1,
        "the agent was never stopped"
    );
    // Unbounded allocation, in the real run: stopped by the size limits, state restored.
    env.script(
        2,
        r#"state.write_text("partial.txt", "x");
if state.exists("stopped-by-term") { let s = "x"; loop { s += s; } }"#,
    );
    env.blueprint(2, Some(AGENT), "  limits:\n    wallTime: 20s\n");
    let out = failed(env.apply(&[]));
    assert!(out.contains("migrations.limits.stringSize"), "{out}");
    assert!(!env.state().join("partial.txt").exists());
    assert_eq!(env.version_and_state(), (1, "running".into()));
    // An endless loop in the real run, stopped by the wall-time limit.
    env.script(2, "if state.exists(\"stopped-by-term\") { loop { } }");
    env.blueprint(
        2,
        Some(AGENT),
        "  limits:\n    operations: 100000000000\n    wallTime: 2s\n",
    );
    let t = Instant::now();
    let out = failed(env.apply(&[]));
    assert!(out.contains("migrations.limits.wallTime"), "{out}");
    assert!(t.elapsed() < Duration::from_secs(30));
    assert_eq!(env.version_and_state(), (1, "running".into()));
}

#[test]
fn paths_that_lead_out_of_the_state_are_refused_and_the_host_file_is_untouched() {
    let env = Env::new("nct-up-paths");
    env.blueprint(1, Some(AGENT), "");
    ok(env.apply(&[]));
    ok(env.nemoclaw(&["stop", "nct-up-paths"]));
    let host = env._tmp.path().join("host-secret.txt");
    std::fs::write(&host, "host data\n").unwrap();
    std::os::unix::fs::symlink(&host, env.state().join("link")).unwrap();
    env.blueprint(2, Some(AGENT), "");
    let attempts = [
        (r#"state.write_text("../escape.txt", "x")"#, "escape.txt"),
        (
            &*format!("state.write_text({:?}, \"x\")", host.display().to_string()),
            "absolute",
        ),
        (r#"state.write_text("link", "overwritten")"#, "link"),
        (r#"state.read_text("hard")"#, "hard"),
        (r#"state.write_text("hard", "overwritten")"#, "hard"),
    ];
    for (script, path) in attempts {
        // A restore copies file contents, so the hard link is made again for every attempt.
        let _ = std::fs::remove_file(env.state().join("hard"));
        std::fs::hard_link(&host, env.state().join("hard")).unwrap();
        let before = env.state_hash_without_agent_files();
        env.script(2, script);
        let out = failed(env.nemoclaw(&[
            "migrate",
            "nct-up-paths",
            "--dir",
            env.src.to_str().unwrap(),
        ]));
        assert!(
            out.contains("refused") && out.contains(path),
            "{script}: {out}"
        );
        assert_eq!(
            std::fs::read_to_string(&host).unwrap(),
            "host data\n",
            "{script}"
        );
        assert!(!env._tmp.path().join("escape.txt").exists());
        assert_eq!(env.state_hash_without_agent_files(), before, "{script}");
        assert_eq!(env.version_and_state().0, 1);
    }
}

/// Kills apply with SIGKILL once the journal shows `phase`, then checks the next apply restores
/// the state and converges on v2 with the migration applied exactly once.
fn kill_during(name: &str, phase: &str, setup: impl Fn(&Env)) {
    let env = Env::new(name);
    setup(&env);
    let mut child = env.spawn_apply();
    wait_until(
        &format!("the {phase} step"),
        Duration::from_secs(60),
        || env.journal_phase().as_deref() == Some(phase),
    );
    // The phase is journalled before its step starts: killing now kills the step.
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        env.journal_phase().as_deref(),
        Some(phase),
        "killed mid-step"
    );
    let status = env.status();
    assert!(
        status["held"]
            .as_str()
            .unwrap_or("")
            .contains("interrupted"),
        "{status}"
    );
    let out = ok(env.apply(&[]));
    assert!(out.contains("was interrupted"), "{out}");
    assert_eq!(env.journal_phase(), None);
    assert_eq!(env.version_and_state(), (2, "running".into()));
    assert_eq!(
        env.read("migrated"),
        "once\n",
        "the script ran on restored state, once"
    );
}

const MIGRATE_ONCE: &str = r#"state.append_text("migrated", "once\n");"#;

#[test]
fn kill_9_during_the_snapshot_converges_on_the_next_apply() {
    kill_during("nct-up-kill-snap", "snapshotting", |env| {
        env.blueprint(1, Some(AGENT), "");
        ok(env.apply(&[]));
        // Enough state that the snapshot takes a while.
        let big = "x".repeat(1 << 20);
        for i in 0..200 {
            env.write(&format!("blobs/{i}.bin"), &big);
        }
        env.blueprint(2, Some(AGENT), "");
        env.script(2, MIGRATE_ONCE);
    });
}

#[test]
fn kill_9_during_a_script_converges_on_the_next_apply() {
    kill_during("nct-up-kill-script", "migrating", |env| {
        env.blueprint(1, Some(AGENT), "");
        ok(env.apply(&[]));
        env.blueprint(2, Some(AGENT), "");
        // Slow only in the real run (the agent saved state at shutdown), and only the first time.
        env.script(
            2,
            &format!(
                r#"state.write_text("half", "x");
if state.exists("stopped-by-term") {{
    let n = 0; while n < 15000000 {{ n += 1; }}
}}
{MIGRATE_ONCE}"#
            ),
        );
    });
}

#[test]
fn kill_9_during_the_health_wait_converges_on_the_next_apply() {
    kill_during("nct-up-kill-health", "starting", |env| {
        env.blueprint(1, Some(AGENT), "");
        ok(env.apply(&[]));
        // v2 becomes healthy 3 s after it starts.
        let v2 = format!("(sleep 3; touch /workspace/state/ready) & {AGENT}");
        env.blueprint(
            2,
            Some(&v2),
            "lifecycle:\n  healthCheck:\n    exec: [/bin/sh, -c, 'test -f /workspace/state/ready']\n    interval: 200ms\n    retries: 100\n",
        );
        env.script(2, &format!("state.remove(\"ready\");\n{MIGRATE_ONCE}"));
    });
}

#[test]
fn an_unhealthy_new_version_is_rolled_back_and_held() {
    let env = Env::new("nct-up-unhealthy");
    deployed_with(
        &env,
        &[("data.json", "{\"v\": 1}\n")],
        r#"state.write_json("data.json", #{v: 2});"#,
        "lifecycle:\n  healthCheck:\n    exec: [/bin/false]\n    interval: 200ms\n    retries: 1\n",
    );
    let before = env.state_hash_without_agent_files();
    let out = failed(env.apply(&[]));
    assert!(
        out.contains("not healthy") && out.contains("rolled back"),
        "{out}"
    );
    assert_eq!(env.state_hash_without_agent_files(), before);
    assert_eq!(env.read("data.json"), "{\"v\": 1}\n");
    assert_eq!(env.version_and_state(), (1, "running".into()));
    assert!(ok(env.plan(&[])).contains("upgrade to v2 failed"));
}

#[test]
fn the_plan_dry_run_shows_the_change_and_leaves_the_state_untouched() {
    let env = Env::new("nct-up-dry");
    deployed_with(
        &env,
        &[
            ("config.json", "{\"model\": \"mock-1\", \"port\": 1}"),
            ("old.txt", "bye\n"),
        ],
        r#"let c = state.read_json("config.json"); c.model = "nvidia/llama"; state.write_json("config.json", c);
state.remove("old.txt"); state.write_text("new.txt", "hello\n");"#,
        "",
    );
    let before = tree_hash(&env.state()).unwrap();
    let plan = ok(env.plan(&[]));
    assert_eq!(
        tree_hash(&env.state()).unwrap(),
        before,
        "the real state is untouched"
    );
    assert!(plan.contains("migration dry run"), "{plan}");
    assert!(
        plan.contains("nvidia/llama") && plan.contains("new.txt") && plan.contains("old.txt"),
        "{plan}"
    );
    let json: serde_json::Value = serde_json::from_slice(&env.plan(&["--json"]).stdout).unwrap();
    let dry = &json["changes"][0]["migration"]["dryRun"];
    assert_eq!(dry["outcome"], "ok", "{json}");
    // `migrate --dry-run` shows the same for one sandbox.
    let out = ok(env.nemoclaw(&[
        "migrate",
        "nct-up-dry",
        "--dry-run",
        "--dir",
        env.src.to_str().unwrap(),
    ]));
    assert!(out.contains("nvidia/llama"), "{out}");
    assert_eq!(tree_hash(&env.state()).unwrap(), before);
}

#[test]
fn rollback_after_an_upgrade_restores_the_old_state_and_version() {
    let env = Env::new("nct-up-rollback");
    deployed_with(
        &env,
        &[("data.json", "{\"v\": 1}\n")],
        r#"state.write_json("data.json", #{v: 2});"#,
        "",
    );
    ok(env.apply(&[]));
    assert_eq!(env.version_and_state(), (2, "running".into()));
    assert_eq!(env.read("data.json"), "{\n  \"v\": 2\n}\n");
    let snap = env.snapshots()[0]["id"].as_str().unwrap().to_string();
    let out = ok(env.nemoclaw(&["rollback", "nct-up-rollback"]));
    assert!(out.contains(&snap), "{out}");
    assert_eq!(env.version_and_state(), (1, "running".into()));
    assert_eq!(env.read("data.json"), "{\"v\": 1}\n");
    // Recorded as the user's intent: apply leaves it until the blueprint changes.
    let plan = ok(env.plan(&[]));
    assert!(
        plan.contains("Left alone") && plan.contains("rolled back"),
        "{plan}"
    );
    assert!(ok(env.apply(&[])).contains("No changes"));
    assert_eq!(env.version_and_state(), (1, "running".into()));
}

#[test]
fn migrate_moves_a_stopped_sandbox_forward_in_place_and_start_runs_it() {
    let env = Env::new("nct-up-migrate");
    env.blueprint(1, Some(AGENT), "");
    ok(env.apply(&[]));
    ok(env.nemoclaw(&["stop", "nct-up-migrate"]));
    env.write("n.txt", "1\n");
    env.blueprint(3, Some(AGENT), "");
    env.script(2, "state.append_text(\"n.txt\", \"2\\n\");");
    env.script(3, "state.append_text(\"n.txt\", \"3\\n\");");
    let dir = env.src.to_str().unwrap().to_string();
    // --to past the source's version is refused.
    let out = failed(env.nemoclaw(&["migrate", "nct-up-migrate", "--to", "4", "--dir", &dir]));
    assert!(out.contains("--to 4"), "{out}");
    let out = ok(env.nemoclaw(&["migrate", "nct-up-migrate", "--to", "2", "--dir", &dir]));
    assert!(out.contains("Migrated nct-up-migrate to v2"), "{out}");
    assert_eq!(env.read("n.txt"), "1\n2\n");
    assert_eq!(env.version_and_state(), (2, "stopped".into()));
    // The next step comes from the source: apply records v3 for the stopped sandbox, migrated.
    let out = ok(env.apply(&[]));
    assert!(out.contains("upgrade nct-up-migrate"), "{out}");
    assert_eq!(env.read("n.txt"), "1\n2\n3\n");
    assert_eq!(env.version_and_state(), (3, "stopped".into()));
    ok(env.nemoclaw(&["start", "nct-up-migrate"]));
    assert_eq!(env.version_and_state(), (3, "running".into()));
    // A running sandbox is not migrated in place; nothing is left to migrate to anyway.
    let out = failed(env.nemoclaw(&["migrate", "nct-up-migrate", "--dir", &dir]));
    assert!(out.contains("stop it first"), "{out}");
    let out = failed(env.nemoclaw(&["migrate", "nct-up-migrate", "--dry-run", "--dir", &dir]));
    assert!(out.contains("must be above it"), "{out}");
}
