//! The quickstart end to end (root): `apply` starts the demo agent in its sandbox, the agent asks
//! the built-in mock model through the gateway at inference.local, and writes the reply into its
//! state on the host; the inference log has the request, without the placeholder key.

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
