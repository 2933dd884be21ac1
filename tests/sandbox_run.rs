//! `nemoclaw run`: bad input fails naming the field and leaves nothing behind; built-in helpers
//! run from the nemoclaw binary mounted inside; one sandbox per name at a time.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "a test stops loudly at the first broken step"
)]

mod sandbox_support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use sandbox_support::*;

fn assert_clean(lab: &Lab, name: &str, o: &Out, field: &str) {
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    assert!(
        o.stderr.contains(field),
        "error names `{field}`: {}",
        o.stderr
    );
    assert!(cgroup_dirs(name).is_empty(), "no cgroup left for {name}");
    assert!(pids_in_cgroup_named(name).is_empty());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(lab.home.to_str().unwrap()),
        "no mount left"
    );
}

#[test]
fn missing_rootfs_names_the_field() {
    let lab = Lab::new();
    let bp = lab.blueprint("bad-rootfs", "filesystem:\n  rootfs: /nonexistent/rootfs\n");
    let o = lab.run(&bp, &["true"]);
    assert_clean(&lab, "bad-rootfs", &o, "filesystem.rootfs");
}

#[test]
fn missing_mount_source_names_the_field() {
    let lab = Lab::new();
    let bp = lab.blueprint(
        "bad-mount",
        "filesystem:\n  mounts:\n    - {host: /nonexistent/data, path: /data}\n",
    );
    let o = lab.run(&bp, &["true"]);
    assert_clean(&lab, "bad-mount", &o, "filesystem.mounts[0].host");
    assert!(
        o.stderr.contains("/nonexistent/data does not exist"),
        "{}",
        o.stderr
    );
}

#[test]
fn missing_agent_command_names_the_field() {
    let lab = Lab::new();
    let p = lab.dir.path().join("bad-agent.yaml");
    std::fs::write(&p, "apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: bad-agent\n  version: 1\nagent:\n  command: /usr/bin/no-such-agent\n").unwrap();
    let o = from_cmd(
        std::process::Command::new(BIN)
            .arg("run")
            .arg(&p)
            .env("NEMOCLAW_HOME", &lab.home),
    );
    assert_clean(&lab, "bad-agent", &o, "agent.command");
}

#[test]
fn too_little_memory_names_the_field() {
    let lab = Lab::new();
    let bp = lab.blueprint("bad-memory", "resources:\n  memory: 1Mi\n");
    let o = lab.run(&bp, &["true"]);
    assert_clean(&lab, "bad-memory", &o, "resources.memory");
}

#[test]
fn unwritable_state_dir_names_it() {
    let lab = Lab::new();
    let bp = lab.blueprint("bad-state", "");
    std::fs::create_dir_all(lab.home.join("state")).unwrap();
    std::fs::write(lab.state("bad-state"), "a file, not a directory").unwrap();
    let o = lab.run(&bp, &["true"]);
    assert_clean(&lab, "bad-state", &o, "state directory");
}

#[test]
fn demo_agent_runs_from_the_mounted_binary() {
    let lab = Lab::new();
    let p = lab.dir.path().join("demo.yaml");
    std::fs::write(&p, "apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: run-demo\n  version: 1\nagent:\n  type: demo\n  args: ['--once']\n").unwrap();
    let o = from_cmd(
        std::process::Command::new(BIN)
            .arg("run")
            .arg(&p)
            .env("NEMOCLAW_HOME", &lab.home),
    );
    // No inference configured: the agent records the error in its state and exits 1.
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("\"agent\":\"demo\""), "{}", o.stdout);
    let state = std::fs::read_to_string(lab.state("run-demo").join("demo-agent.json")).unwrap();
    assert!(state.contains("\"runs\": 1"), "{state}");
    let bp = lab.blueprint("run-version", "");
    let o = lab.run(&bp, &["/opt/nemoclaw/bin/nemoclaw", "--version"]);
    o.ok();
    assert!(o.stdout.starts_with("nemoclaw "), "{}", o.stdout);
}

#[test]
fn one_sandbox_per_name_at_a_time() {
    let lab = Lab::new();
    let bp = lab.blueprint("run-once", "");
    let mut first = std::process::Command::new(BIN)
        .arg("run")
        .arg(&bp)
        .args(["--", "sleep", "30"])
        .env("NEMOCLAW_HOME", &lab.home)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids_in_cgroup_named("run-once").is_empty() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = lab.run(&bp, &["true"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("already running"), "{}", o.stderr);
    first.kill().unwrap();
    let _ = first.wait();
    // The sandbox died with its parent (parent-death signal), so the name is free again.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !pids_in_cgroup_named("run-once").is_empty() {
        assert!(Instant::now() < deadline, "sandbox outlived its parent");
        std::thread::sleep(Duration::from_millis(20));
    }
    lab.run(&bp, &["true"]).ok();
}

#[test]
fn explicit_rootfs_is_used() {
    let lab = Lab::new();
    let bp = lab.blueprint("run-rootfs", "filesystem:\n  rootfs: /\n");
    lab.sh(&bp, "test -x /usr/bin/env").ok();
}

#[test]
fn a_command_that_cannot_be_executed_fails_at_start_naming_the_step() {
    let lab = Lab::new();
    let bin = lab.dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(bin.join("script"), "#!/bin/sh\necho hi\n").unwrap();
    let bp = lab.blueprint(
        "run-noexec",
        &format!(
            "filesystem:\n  mounts:\n    - {{host: {}, path: /data}}\n",
            bin.display()
        ),
    );
    let o = lab.run(&bp, &["/data/script"]);
    assert_clean(&lab, "run-noexec", &o, "execute the command");
    assert!(o.stderr.contains("EACCES"), "{}", o.stderr);
}
