#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "tests"
)]
//! `nemoclaw plugins list|show`: what is available and where it comes from (built in, the
//! home's `plugins/`, a source's `plugins/`, each hiding the one before).

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_nemoclaw");

fn plugin(dir: &Path, name: &str, description: &str) {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("plugin.yaml"),
        format!("apiVersion: nemoclaw.dev/v1\nkind: Plugin\nmetadata:\n  name: {name}\n  description: {description}\nstart:\n  command: [my-agent, --serve]\nports: [9000]\n"),
    )
    .unwrap();
}

fn nemoclaw(home: &Path, args: &[&str]) -> String {
    let o = Command::new(BIN)
        .args(args)
        .env("NEMOCLAW_HOME", home)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn list_and_show_say_where_each_plugin_comes_from() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    plugin(&home.join("plugins"), "myagent", "from the home");
    plugin(&home.join("plugins"), "hermes", "a home override of hermes");
    let src = t.path().join("src");
    plugin(&src.join("plugins"), "myagent", "from the source");

    let list = nemoclaw(&home, &["plugins", "list"]);
    for name in ["command", "demo", "openclaw"] {
        assert!(
            list.lines()
                .any(|l| l.starts_with(name) && l.contains("builtin")),
            "{list}"
        );
    }
    assert!(list.contains("npm openclaw@2026.9.6"), "{list}");
    let hermes = list.lines().find(|l| l.starts_with("hermes")).unwrap();
    assert!(
        hermes.contains("home ") && hermes.contains("a home override"),
        "{hermes}"
    );

    let json: serde_json::Value = serde_json::from_str(&nemoclaw(
        &home,
        &["plugins", "list", "--json", "--dir", src.to_str().unwrap()],
    ))
    .unwrap();
    let mine = json
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "myagent")
        .unwrap();
    assert!(
        mine["origin"].as_str().unwrap().starts_with("source "),
        "{mine}"
    );
    assert!(
        mine["shadows"][0].as_str().unwrap().starts_with("home "),
        "{mine}"
    );

    let show = nemoclaw(&home, &["plugins", "show", "openclaw"]);
    assert!(show.contains("start:     openclaw gateway run"), "{show}");
    assert!(
        show.contains("setup:     a setup sandbox, egress npm"),
        "{show}"
    );
    assert!(show.contains("health:    http :18789/healthz"), "{show}");
    let o = Command::new(BIN)
        .args(["plugins", "show", "nosuch"])
        .env("NEMOCLAW_HOME", &home)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown plugin `nosuch`"));
}
