//! The README's commands and examples run: the main-job command's nemoclaw invocation, the
//! blueprint it shows, and the validate output it prints are checked against the real binary.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "a test stops loudly at the first broken step"
)]

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).unwrap()
}

/// Fenced blocks of the given info string, in order.
fn blocks(text: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        match &mut cur {
            None if line.trim_start() == format!("```{lang}") => cur = Some(String::new()),
            Some(b) if line.trim_start() == "```" => {
                out.push(std::mem::take(b));
                cur = None;
            }
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None => {}
        }
    }
    out
}

#[test]
fn the_two_commands_come_first_and_ci_runs_the_second() {
    let text = readme();
    let sh = blocks(&text, "sh");
    let main_job = sh[0].trim();
    let tests = sh[1].trim();
    // The first two fenced blocks of the README are these two commands.
    let first_fence = text.find("```").unwrap();
    assert!(
        text[first_fence..].starts_with("```sh\n"),
        "the README opens with the commands"
    );
    assert_eq!(tests, "scripts/test");
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == "exec scripts/test"),
        ".ci/run runs exactly the README's test command"
    );
    // The main job: install, build, then nemoclaw commands that must all succeed, run here
    // exactly as written (with the binary under test and a private home).
    let (setup, rest) = main_job
        .split_once("&& target/release/nemoclaw ")
        .expect("main job runs nemoclaw");
    assert_eq!(
        setup.trim(),
        "scripts/install-deps && cargo build --release"
    );
    assert!(
        nix::unistd::geteuid().is_root(),
        "the main job starts a sandbox: run this test as root"
    );
    let home = tempfile::tempdir().unwrap();
    let mut outputs = Vec::new();
    for cmd in rest.split("&& target/release/nemoclaw ") {
        let args: Vec<&str> = cmd.split_whitespace().collect();
        let out = Command::new(env!("CARGO_BIN_EXE_nemoclaw"))
            .args(&args)
            .env("NEMOCLAW_HOME", home.path())
            // The agent installs are shared with the real-agent tests (see agents_support).
            .env("NEMOCLAW_AGENT_CACHE", "/var/cache/nemoclaw-test/agents")
            .current_dir(root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "README main job `nemoclaw {cmd}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        outputs.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    // The real OpenClaw answered through the gateway, from the mock's scripted reply.
    let answer = outputs.last().unwrap();
    assert!(
        answer.contains("Hello from the nemoclaw mock model"),
        "{answer}"
    );
    let stop = Command::new(env!("CARGO_BIN_EXE_nemoclaw"))
        .args(["destroy", "openclaw-mock", "--delete-state"])
        .env("NEMOCLAW_HOME", home.path())
        .output()
        .unwrap();
    assert!(stop.status.success());
    for script in ["scripts/install-deps", "scripts/test", ".ci/run"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(root().join(script))
                .unwrap()
                .permissions(),
        );
        assert!(mode & 0o111 != 0, "{script} is executable");
    }
}

#[test]
fn the_readme_blueprint_is_valid() {
    let yaml = blocks(&readme(), "yaml");
    let blueprint = yaml
        .iter()
        .find(|b| b.contains("kind: Blueprint"))
        .expect("a blueprint example");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("readme.yaml");
    std::fs::write(&p, blueprint).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nemoclaw"))
        .arg("validate")
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_readme_validate_output_is_what_validate_prints() {
    let shown = blocks(&readme(), "text")
        .into_iter()
        .find(|b| b.contains("error["))
        .expect("a validate output example");
    let out = Command::new(env!("CARGO_BIN_EXE_nemoclaw"))
        .args(["validate", "examples/invalid/unknown-field.yaml"])
        .current_dir(root())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr), shown);
}

#[test]
fn the_readme_plan_output_is_what_plan_prints() {
    let shown = blocks(&readme(), "text")
        .into_iter()
        .find(|b| b.contains("+ create quickstart"))
        .expect("a plan example");
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nemoclaw"))
        .args(["plan", "--dir", "examples/quickstart"])
        .env("NEMOCLAW_HOME", home.path())
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    // The first line names the source by its absolute path, which differs between checkouts.
    let body = |t: &str| {
        t.split_once('\n')
            .map(|(_, rest)| rest.to_string())
            .unwrap_or_default()
    };
    assert!(
        printed.starts_with("Source: /")
            && printed
                .lines()
                .next()
                .unwrap()
                .ends_with("/examples/quickstart")
    );
    assert_eq!(body(&printed), body(&shown));
}

/// The state the README's script examples run on, one after another.
fn script_fixture(state: &std::path::Path) {
    let w = |p: &str, t: &str| {
        let p = state.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, t).unwrap();
    };
    w("config.json", "{\"model\": \"mock-1\", \"port\": 1}");
    w("agent.yaml", "name: old\n");
    w("settings.toml", "theme = \"light\"\n");
    w("notes.md", "hello\n");
    w(
        "events.jsonl",
        "{\"kind\":\"debug\"}\n{\"kind\":\"info\"}\n",
    );
    w("sessions/2026/a.json", "{\"model\": \"m\"}");
    w("cache/blob.bin", "x");
    let db = rusqlite::Connection::open(state.join("state.db")).unwrap();
    db.execute_batch("CREATE TABLE memories(id INTEGER PRIMARY KEY, text TEXT, pinned INTEGER); INSERT INTO memories VALUES (1, 'a', 1), (2, 'b', 0);").unwrap();
}

#[test]
fn the_readme_migration_examples_run() {
    use nemoclaw::migrate::engine::{run, RunInput, Step};
    let scripts = blocks(&readme(), "rhai");
    assert!(scripts.len() >= 5, "the README shows the script API");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    script_fixture(&state);
    let limits = nemoclaw::blueprint::ScriptLimits::default();
    let printed = std::sync::Mutex::new(Vec::new());
    for (i, text) in scripts.iter().enumerate() {
        let script = dir.path().join(format!("v{}.rhai", i + 2));
        std::fs::write(&script, text).unwrap();
        let steps = [Step {
            version: i as u32 + 2,
            script,
        }];
        let input = RunInput {
            name: "assistant",
            from: 1,
            to: 9,
            steps: &steps,
            limits: &limits,
        };
        run(&state, &input, &|l| {
            printed.lock().unwrap().push(l.to_string())
        })
        .unwrap_or_else(|e| panic!("README script {}:\n{text}\n{e}", i + 1));
    }
    let read = |p: &str| std::fs::read_to_string(state.join(p)).unwrap();
    assert!(read("config.json").contains("nvidia/llama-3.3-70b-instruct"));
    assert!(read("config/agent.yaml").contains("assistant"));
    assert!(read("settings.toml").contains("dark"));
    assert_eq!(read("notes.md"), "HELLO\n");
    assert!(read("CHANGELOG").starts_with("migrated to v3"));
    assert!(!read("events.jsonl").contains("debug"));
    assert!(read("sessions/2026/a.json").contains("modelId"));
    assert!(!state.join("cache").exists());
    assert!(state.join("config/old/config.json").is_file());
    let db = rusqlite::Connection::open(state.join("state.db")).unwrap();
    let pinned: i64 = db
        .query_row("SELECT importance FROM memories WHERE id = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(pinned, 5);
    let printed = printed.lock().unwrap().join("\n");
    assert!(
        printed.contains("kept 2 events") && printed.contains("memory 1: 5"),
        "{printed}"
    );
}

/// The upgrade section's plan, as `plan` prints it for the scenario the README describes
/// (a real sandbox, so root; named so it cannot collide with a user's `assistant`).
#[test]
fn the_readme_upgrade_plan_is_what_plan_prints() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test deploys a real sandbox: run it as root"
    );
    let shown = blocks(&readme(), "text")
        .into_iter()
        .find(|b| b.starts_with("~ upgrade assistant v1→v2"))
        .expect("the upgrade section's plan");
    let dir = tempfile::tempdir().unwrap();
    let (home, src) = (dir.path().join("home"), dir.path().join("src"));
    std::fs::create_dir_all(src.join("migrations")).unwrap();
    const NAME: &str = "nct-readme-assistant";
    let blueprint = |v: u32| {
        format!("apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: {NAME}\n  version: {v}\nagent:\n  type: command\n  command: /bin/sh\n  args: [\"-c\", \"exec sleep 1000\"]\nmigrations:\n  dir: migrations\n")
    };
    let nemoclaw = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_nemoclaw"))
            .args(args)
            .arg("--dir")
            .arg(&src)
            .env("NEMOCLAW_HOME", &home)
            .output()
            .unwrap()
    };
    std::fs::write(src.join("a.yaml"), blueprint(1)).unwrap();
    assert!(nemoclaw(&["apply", "--auto-approve"]).status.success());
    let state = home.join("state").join(NAME);
    std::fs::write(
        state.join("config.json"),
        r#"{"model": "mock-1", "port": 1}"#,
    )
    .unwrap();
    std::fs::write(state.join("old.txt"), "bye\n").unwrap();
    std::fs::write(src.join("a.yaml"), blueprint(2)).unwrap();
    std::fs::write(
        src.join("migrations/v2.rhai"),
        "let c = state.read_json(\"config.json\");\nc.model = \"nvidia/llama-3.3-70b-instruct\";\nstate.write_json(\"config.json\", c);\nstate.remove(\"old.txt\");\nstate.write_text(\"notes.md\", \"hello\\n\");\n",
    )
    .unwrap();
    let out = nemoclaw(&["plan"]);
    let _ = Command::new(env!("CARGO_BIN_EXE_nemoclaw"))
        .args(["stop", NAME])
        .env("NEMOCLAW_HOME", &home)
        .output();
    let text = String::from_utf8_lossy(&out.stdout).replace(NAME, "assistant");
    let printed = text
        .split_once("\n\n")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    assert_eq!(printed, shown);
}
