//! The GitOps snippets in examples/gitops/ name commands that exist (parsed by the real CLI
//! parser) and the systemd units pass `systemd-analyze verify`.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "a test stops loudly at the first broken step"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use nemoclaw::cli::Cli;

fn gitops() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gitops")
}

/// Every `nemoclaw ...` command line in a snippet, cut at shell operators.
fn commands(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let Some(i) = line
            .find("nemoclaw ")
            .filter(|&i| i == 0 || line[..i].ends_with([' ', '/', '=']))
        else {
            continue;
        };
        if line[..i].contains("--path") || line.contains("cargo install") {
            continue;
        }
        let cmd = line[i..]
            .split(['|', '>', ';'])
            .next()
            .unwrap()
            .trim()
            .to_string();
        out.push(cmd.split_whitespace().map(String::from).collect());
    }
    out
}

#[test]
fn every_command_in_the_snippets_parses() {
    let mut checked = 0;
    for entry in std::fs::read_dir(gitops()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        for cmd in commands(&std::fs::read_to_string(&path).unwrap()) {
            if let Err(e) = Cli::try_parse_from(&cmd) {
                panic!(
                    "{}: `{}` does not parse: {e}",
                    path.display(),
                    cmd.join(" ")
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 8, "found {checked} commands");
}

#[test]
fn a_wrong_flag_would_be_caught() {
    assert!(Cli::try_parse_from(["nemoclaw", "apply", "--auto-aprove"]).is_err());
    assert_eq!(
        commands("ExecStart=/usr/local/bin/nemoclaw watch --dir /x\n"),
        vec![vec!["nemoclaw", "watch", "--dir", "/x"]]
    );
}

#[test]
fn systemd_units_verify() {
    let analyze = Path::new("/usr/bin/systemd-analyze");
    assert!(
        analyze.exists(),
        "systemd-analyze is needed (Debian package systemd)"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for entry in std::fs::read_dir(gitops()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .extension()
            .is_some_and(|e| e == "service" || e == "path")
        {
            // Point ExecStart at the binary under test so verify can check it is executable.
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace("/usr/local/bin/nemoclaw", env!("CARGO_BIN_EXE_nemoclaw"));
            let dest = dir.path().join(path.file_name().unwrap());
            std::fs::write(&dest, text).unwrap();
            units.push(dest);
        }
    }
    assert_eq!(units.len(), 4);
    let out = Command::new(analyze)
        .arg("verify")
        .arg("--man=no")
        .args(&units)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
