//! `nemoclaw validate` against the shipped examples: every valid example passes, every invalid
//! one fails with exactly the code and position its file declares, and the schema is fresh.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "a test stops loudly at the first broken step"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_nemoclaw")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn validate_json(args: &[&Path]) -> (Output, serde_json::Value) {
    let out = Command::new(bin())
        .arg("validate")
        .arg("--json")
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "validate --json printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out, v)
}

fn errors(v: &serde_json::Value) -> Vec<&serde_json::Value> {
    v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["severity"] == "error")
        .collect()
}

/// Every directory under migrations-examples/ (each holds one blueprint with its scripts).
fn migration_examples() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("migrations-examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn valid_examples_pass() {
    let mut dirs = vec![
        root().join("examples"),
        root().join("examples/quickstart"),
        root().join("examples/mock"),
    ];
    dirs.extend(migration_examples());
    assert!(dirs.contains(&root().join("migrations-examples/openclaw-default-model")));
    for dir in &dirs {
        let (out, v) = validate_json(&[dir]);
        let dir = dir.display();
        assert_eq!(out.status.code(), Some(0), "{dir}: {v:#}");
        assert!(v["valid"].as_bool().unwrap());
        assert!(
            !v["blueprints"].as_array().unwrap().is_empty(),
            "{dir} has blueprints"
        );
        assert!(errors(&v).is_empty(), "{dir}: {v:#}");
    }
}

#[test]
fn directories_are_not_recursed() {
    // examples/ holds invalid/ and quickstart/: only its top-level files are read.
    let (_, v) = validate_json(&[Path::new("examples")]);
    let names: Vec<&str> = v["blueprints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gpu-worker", "hermes", "openclaw"]);
}

/// `# expect: CODE at LINE:COL` from the first line of an invalid example.
fn expectation(text: &str) -> (String, u64, u64) {
    let first = text.lines().next().unwrap();
    let rest = first
        .strip_prefix("# expect: ")
        .unwrap_or_else(|| panic!("no expectation line: {first}"));
    let mut parts = rest.split_whitespace();
    let code = parts.next().unwrap().to_string();
    assert_eq!(parts.next(), Some("at"));
    let (l, c) = parts.next().unwrap().split_once(':').unwrap();
    (code, l.parse().unwrap(), c.parse().unwrap())
}

#[test]
fn each_invalid_file_fails_with_its_code_and_position() {
    let dir = root().join("examples/invalid");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let (code, line, col) = expectation(&std::fs::read_to_string(&path).unwrap());
        let (out, v) = validate_json(&[&path]);
        assert_eq!(out.status.code(), Some(1), "{}: {v:#}", path.display());
        let errs = errors(&v);
        assert_eq!(
            errs.len(),
            1,
            "{}: exactly one error expected, got {errs:#?}",
            path.display()
        );
        let e = errs[0];
        assert_eq!(e["code"], code.as_str(), "{}", path.display());
        assert_eq!(
            (e["line"].as_u64(), e["column"].as_u64()),
            (Some(line), Some(col)),
            "{}: {e:#}",
            path.display()
        );
        assert!(!e["message"].as_str().unwrap().is_empty());
        checked += 1;
    }
    assert!(
        checked >= 30,
        "expected at least 30 invalid examples, found {checked}"
    );
}

/// The lines of an `expect.txt`: `FILE CODE LINE:COL`, one per error.
fn expected_errors(text: &str) -> Vec<(String, String, u64, u64)> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.split_whitespace();
            let (file, code, pos) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            );
            let (l, c) = pos.split_once(':').unwrap();
            (
                file.into(),
                code.into(),
                l.parse().unwrap(),
                c.parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn each_invalid_directory_fails_as_its_expect_file_says() {
    let dir = root().join("examples/invalid");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let case = entry.unwrap().path();
        if !case.is_dir() {
            continue;
        }
        let expected = expected_errors(&std::fs::read_to_string(case.join("expect.txt")).unwrap());
        let (out, v) = validate_json(&[&case]);
        assert_eq!(out.status.code(), Some(1), "{}: {v:#}", case.display());
        let errs = errors(&v);
        assert_eq!(errs.len(), expected.len(), "{}: {errs:#?}", case.display());
        for (file, code, l, c) in &expected {
            let found = errs.iter().any(|e| {
                e["code"] == code.as_str()
                    && e["file"].as_str().unwrap().ends_with(file.as_str())
                    && e["line"].as_u64() == Some(*l)
                    && e["column"].as_u64() == Some(*c)
            });
            assert!(
                found,
                "{}: no {code} at {file}:{l}:{c} in {errs:#?}",
                case.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 9);
}

#[test]
fn all_errors_of_all_files_in_one_run() {
    let dir = root().join("examples/invalid");
    let (out, v) = validate_json(&[&dir]);
    assert_eq!(out.status.code(), Some(1));
    // One error per top-level invalid file, none stopping the others.
    let files: std::collections::BTreeSet<&str> = errors(&v)
        .iter()
        .map(|e| e["file"].as_str().unwrap())
        .collect();
    let yaml_files = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "yaml")
        })
        .count();
    assert_eq!(files.len(), yaml_files, "{files:#?}");
}

#[test]
fn schema_file_is_fresh() {
    for (kind, file) in [
        ("blueprint", "schemas/blueprint.schema.json"),
        ("source-config", "schemas/source-config.schema.json"),
        ("plugin", "schemas/plugin.schema.json"),
    ] {
        let out = Command::new(bin())
            .args(["schema", "--kind", kind])
            .output()
            .unwrap();
        assert!(out.status.success());
        let committed = std::fs::read_to_string(root().join(file)).unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim_end(),
            committed.trim_end(),
            "{file} is stale: regenerate it with `nemoclaw schema --kind {kind} > {file}`"
        );
    }
}
