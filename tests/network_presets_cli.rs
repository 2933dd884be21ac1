//! `nemoclaw presets list|show`: built-ins plus the home's presets/<name>.yaml.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "a test stops loudly at the first broken step"
)]

use std::process::Command;

fn nemoclaw(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nemoclaw"))
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn list_and_show_builtin_and_user_presets() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("presets")).unwrap();
    std::fs::write(
        home.path().join("presets/corp.yaml"),
        "description: internal services\ndomains:\n  - wiki.corp.example\n  - {host: git.corp.example, ports: [22, 443]}\n",
    )
    .unwrap();
    let o = nemoclaw(home.path(), &["presets", "list"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    for name in [
        "github",
        "npm",
        "pypi",
        "huggingface",
        "slack",
        "telegram",
        "discord",
        "corp",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(name)),
            "{name} missing from:\n{out}"
        );
    }
    let o = nemoclaw(home.path(), &["presets", "show", "corp", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["domains"],
        serde_json::json!(["wiki.corp.example", "git.corp.example (ports 22, 443)"])
    );
    let o = nemoclaw(home.path(), &["presets", "show", "github"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("api.github.com"));
    let o = nemoclaw(home.path(), &["presets", "show", "githib"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("did you mean `github`"));
    std::fs::write(
        home.path().join("presets/bad.yaml"),
        "domains: [\"https://x.example/\"]\n",
    )
    .unwrap();
    let o = nemoclaw(home.path(), &["presets", "show", "bad"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("invalid: "),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}
