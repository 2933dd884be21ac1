//! The quickstart end to end (root): `apply` starts the demo agent in its sandbox, the agent asks
//! the built-in mock model through the gateway at inference.local, and writes the reply into its
//! state on the host; the inference log has the request, without the placeholder key.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "a test stops loudly at the first broken step"
)]

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn nemoclaw(home: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nemoclaw"))
        .args(args)
        .env("NEMOCLAW_HOME", home)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn the_demo_agent_talks_to_the_mock_model_through_the_gateway() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the quickstart starts a sandbox: run this test as root"
    );
    let home = tempfile::tempdir().unwrap();
    let o = nemoclaw(
        home.path(),
        &["apply", "--dir", "examples/quickstart", "--auto-approve"],
    );
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let state = home.path().join("state/quickstart/demo-agent.json");
    let end = Instant::now() + Duration::from_secs(20);
    let v = loop {
        if let Some(v) = std::fs::read(&state)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        {
            if v["last_reply"].is_string() || Instant::now() > end {
                break v;
            }
        }
        assert!(Instant::now() < end, "the demo agent wrote no state");
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = nemoclaw(home.path(), &["stop", "quickstart"]);
    assert!(
        v["last_reply"].as_str().is_some_and(|r| !r.is_empty()),
        "no reply from the model: {v}"
    );
    assert!(v["last_error"].is_null(), "{v}");
    let log = std::fs::read_to_string(home.path().join("logs/quickstart/inference.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(line["model"], "mock-1");
    assert_eq!(line["status"], 200);
}

#[test]
fn a_gateway_key_never_enters_the_sandbox_or_any_file() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test starts a sandbox: run it as root"
    );
    let home = tempfile::tempdir().unwrap();
    let src = home.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let canary = "nvapi-CANARY-4f1c2d9e8b7a6f5e4d3c2b1a0f9e8d7c";
    std::fs::write(
        src.join("canary.yaml"),
        "apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata: {name: canary, version: 1}\nagent: {type: command, command: /bin/sleep, args: [\"1000\"]}\ninference:\n  backends:\n    - {name: up, kind: openai, url: \"http://127.0.0.1:9/v1\", apiKey: {env: CANARY_TEST_KEY}}\n  allowedModels: [m]\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_nemoclaw"))
            .args(args)
            .env("NEMOCLAW_HOME", home.path())
            .env("CANARY_TEST_KEY", canary)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let mut seen = String::new();
    for args in [
        vec!["plan", "--dir", src.to_str().unwrap()],
        vec!["apply", "--auto-approve", "--dir", src.to_str().unwrap()],
        vec!["status", "--json"],
        vec!["exec", "canary", "--", "/bin/sh", "-c", "env; cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline; grep -rs nvapi /etc /tmp /workspace /opt; echo probe-done"],
    ] {
        let o = run(&args);
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        seen.push_str(&String::from_utf8_lossy(&o.stdout));
        seen.push_str(&String::from_utf8_lossy(&o.stderr));
    }
    let _ = run(&["stop", "canary"]);
    assert!(
        seen.contains("OPENAI_API_KEY=nemoclaw-placeholder-key"),
        "the agent sees the placeholder: {seen}"
    );
    assert!(seen.contains("probe-done"));
    assert!(
        !seen.contains(canary),
        "the key leaked into command output or the sandbox: {seen}"
    );
    // Nor into any file nemoclaw wrote: records, deployed blueprint, logs, state.
    for entry in walk(home.path()) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(canary),
            "the key is in {}",
            entry.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            out.extend(walk(&p));
        } else if meta.is_file() {
            out.push(p);
        }
    }
    out
}
