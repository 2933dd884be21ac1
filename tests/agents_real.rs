#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "tests"
)]
//! The real OpenClaw and Hermes, installed by their built-in plugins and run in sandboxes with
//! the default network policy, answering through the gateway from the built-in mock model
//! scripted to a known text — as a user would run them: `apply` of the mock examples, then
//! `nemoclaw exec` of the agents' own CLIs. Installs are cached in [`AGENT_CACHE`] between
//! runs; a cold machine downloads them (npm, PyPI) in a setup sandbox.

mod agents_support;
mod sandbox_support;

use std::time::Duration;

use agents_support::*;
use sandbox_support::*;

/// A value the gateway holds as the mock backend's key: it must never reach the sandbox.
const GATEWAY_SECRET: &str = "nctest-gateway-secret-4f1c9a";

fn replies(tag: &str) -> String {
    format!(
        "replies:\n  - match: what did I say\n    echo: history\n  - match: PAPAYA-42\n    reply: {tag} scripted answer\n"
    )
}

/// The mock backend of the example gets a key held by the gateway (a credentials file of the
/// home).
fn with_gateway_key(lab: &Lab, src: &std::path::Path, name: &str) {
    let p = src.join(format!("{name}.yaml"));
    let text = std::fs::read_to_string(&p).unwrap().replace(
        "      kind: mock\n",
        "      kind: mock\n      apiKey: {file: nctest-gateway-key}\n",
    );
    std::fs::write(p, text).unwrap();
    let creds = lab.home.join("credentials");
    std::fs::create_dir_all(&creds).unwrap();
    let key = creds.join("nctest-gateway-key");
    std::fs::write(&key, GATEWAY_SECRET).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
}

/// Applies the source (installing the agent when the cache lacks it) and waits for health.
fn apply_and_wait(lab: &Lab, src: &std::path::Path, name: &str) -> Out {
    let dir = src.to_str().unwrap();
    let out = nc_for(
        lab,
        1500,
        &["apply", "--dir", dir, "--auto-approve", "--wait", "120s"],
    );
    out.ok();
    wait_healthy(lab, name, Duration::from_secs(120));
    out
}

/// What every agent test checks after its first answer: the gateway saw the call, the agent's
/// files are in the host's state dir, the gateway's key is nowhere in the sandbox, and
/// reaching the npm registry at run time (no preset) is refused and logged.
fn check_gateway_state_and_egress(lab: &Lab, name: &str, state_file: &str) {
    let inference = log_lines(lab, name, "inference.jsonl");
    assert!(
        inference
            .iter()
            .any(|l| l["endpoint"] == "chat.completions" && l["status"] == 200),
        "{inference:?}"
    );
    assert!(lab.state(name).join(state_file).is_file(), "{state_file}");
    let env = nc(lab, &["exec", name, "--", "/usr/bin/env"]);
    env.ok();
    assert!(env
        .stdout
        .contains("OPENAI_API_KEY=nemoclaw-placeholder-key"));
    assert!(!env.has(GATEWAY_SECRET));
    assert!(tree_lacks(&lab.state(name), GATEWAY_SECRET));
    assert!(tree_lacks(
        &lab.home.join("logs").join(name),
        GATEWAY_SECRET
    ));
    let npm = nc(
        lab,
        &[
            "exec",
            name,
            "--",
            "/usr/bin/curl",
            "-sS",
            "-m",
            "5",
            "https://registry.npmjs.org/",
        ],
    );
    npm.failed();
    let egress = log_lines(lab, name, "egress.jsonl");
    assert!(
        egress
            .iter()
            .any(|l| l["host"] == "registry.npmjs.org" && l["decision"] == "deny"),
        "{egress:?}"
    );
}

/// `stop` then `start`: up again, healthy, and nothing installed or downloaded.
fn restart(lab: &Lab, name: &str) {
    let setup_lines = setup_egress_lines(lab);
    nc(lab, &["stop", name]).ok();
    let start = nc_for(lab, 300, &["start", name, "--wait", "120s"]);
    start.ok();
    assert!(!start.has("setup:"), "{}", start.stderr);
    wait_healthy(lab, name, Duration::from_secs(120));
    assert_eq!(
        setup_egress_lines(lab),
        setup_lines,
        "a warm start downloads nothing"
    );
}

#[test]
fn openclaw_answers_through_the_gateway_and_remembers_across_a_restart() {
    let _one = ONE_AGENT.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::new();
    let name = format!("nctest-oc-{}", std::process::id());
    let _destroy = Destroy(&lab, &name);
    let port = free_port();
    let src = example_source(&lab, "openclaw.yaml", &name, &replies("OPENCLAW"), port);
    with_gateway_key(&lab, &src, &name);
    apply_and_wait(&lab, &src, &name);
    let ask = |msg: &str| {
        let out = nc_for(
            &lab,
            240,
            &[
                "exec",
                &name,
                "--",
                "openclaw",
                "agent",
                "--agent",
                "main",
                "--message",
                msg,
                "--json",
            ],
        );
        out.ok();
        out.stdout
    };
    let first = ask("Remember the word PAPAYA-42 for me.");
    assert!(first.contains("OPENCLAW scripted answer"), "{first}");
    check_gateway_state_and_egress(&lab, &name, "openclaw/openclaw.json");
    assert!(lab
        .state(&name)
        .join("openclaw/state/openclaw.sqlite")
        .is_file());
    restart(&lab, &name);
    let later = ask("what did I say before?");
    assert!(
        later.contains("PAPAYA-42"),
        "the session survived the restart: {later}"
    );
}

#[test]
fn hermes_answers_through_the_gateway_and_remembers_across_a_restart() {
    let _one = ONE_AGENT.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::new();
    let name = format!("nctest-hm-{}", std::process::id());
    let _destroy = Destroy(&lab, &name);
    let src = example_source(&lab, "hermes.yaml", &name, &replies("HERMES"), 0);
    with_gateway_key(&lab, &src, &name);
    apply_and_wait(&lab, &src, &name);
    let ask = |args: &[&str]| {
        let mut full = vec!["exec", name.as_str(), "--", "hermes"];
        full.extend_from_slice(args);
        let out = nc_for(&lab, 240, &full);
        out.ok();
        out.stdout
    };
    let first = ask(&["-z", "Remember the word PAPAYA-42 for me."]);
    assert!(first.contains("HERMES scripted answer"), "{first}");
    check_gateway_state_and_egress(&lab, &name, "hermes/state.db");
    restart(&lab, &name);
    // `-z` is one-shot; `chat -Q --continue` goes on with the most recent session, the one
    // `-z` made before the restart.
    let later = ask(&["chat", "-Q", "--continue", "-q", "what did I say before?"]);
    assert!(
        later.contains("PAPAYA-42"),
        "the session survived the restart: {later}"
    );

    // Same inference and network, another agent type: the plan replaces the sandbox.
    let bp = src.join(format!("{name}.yaml"));
    let text = std::fs::read_to_string(&bp).unwrap();
    std::fs::write(
        &bp,
        text.replace("type: hermes", "type: openclaw")
            .replace("version: \"0.19.0\"", "version: \"2026.9.6\""),
    )
    .unwrap();
    let plan = nc_for(&lab, 120, &["plan", "--dir", src.to_str().unwrap()]);
    plan.ok();
    assert!(
        plan.stdout.contains(&format!("-/+ replace {name}")),
        "{}",
        plan.stdout
    );
}
