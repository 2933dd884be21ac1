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
    let status = outputs.last().unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("quickstart ") && l.contains(" running ")),
        "{status}"
    );
    let stop = Command::new(env!("CARGO_BIN_EXE_nemoclaw"))
        .args(["stop", "quickstart"])
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
