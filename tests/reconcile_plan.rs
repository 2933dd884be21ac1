//! `nemoclaw plan` end to end: a temp NEMOCLAW_HOME, directory and git sources (a repository
//! the test creates with git2), inventory records, exit codes, JSON and saved plans.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "a test stops loudly at the first broken step"
)]

use std::path::Path;
use std::process::{Command, Output};

use nemoclaw::home::Home;
use nemoclaw::reconcile::inventory::{
    blueprint_hash, save_record, Deployed, SourceRef, RECORD_FORMAT,
};

fn nemoclaw(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nemoclaw"))
        .args(args)
        .env("NEMOCLAW_HOME", home)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn blueprint(name: &str, extra: &str) -> String {
    format!("apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: {name}\n  version: 1\nagent:\n  type: demo\n{extra}")
}

/// Records `file` as deployed, as apply would.
fn deploy(home: &Path, file: &Path) {
    let e = nemoclaw::blueprint::set::load_one(file).unwrap();
    let bp = e.blueprint;
    let rec = Deployed {
        format: RECORD_FORMAT,
        name: bp.metadata.name.clone(),
        hash: blueprint_hash(&bp),
        version: bp.metadata.version,
        blueprint: bp,
        source: SourceRef {
            kind: "dir".into(),
            location: "test".into(),
            file: None,
            commit: None,
        },
        created_at: 0,
        applied_at: 0,
        stopped: true,
        hold: None,
        plugin_hash: None,
    };
    save_record(&Home::at(home), &rec).unwrap();
}

#[test]
fn create_update_replace_and_no_changes_with_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, src) = (tmp.path().join("home"), tmp.path().join("src"));
    std::fs::create_dir_all(&src).unwrap();
    let a = src.join("a.yaml");
    std::fs::write(&a, blueprint("a", "")).unwrap();
    let d = src.to_str().unwrap();

    let o = nemoclaw(&home, &["plan", "--dir", d, "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("+ create a (v1)"), "{}", text(&o));
    assert!(text(&o)
        .ends_with("Plan: 1 to create, 0 to update, 0 to upgrade, 0 to replace, 0 to destroy.\n"));

    // Deployed (and stopped by the user, so liveness does not matter): no changes.
    deploy(&home, &a);
    let o = nemoclaw(&home, &["plan", "--dir", d, "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("a: stopped by the user: `nemoclaw start a` brings it back"),
        "{}",
        text(&o)
    );
    assert!(text(&o).ends_with("No changes. Sandboxes match the blueprints.\n"));

    std::fs::write(
        &a,
        blueprint("a", "network:\n  egress:\n    allowedDomains: [pypi.org]\n"),
    )
    .unwrap();
    let o = nemoclaw(&home, &["plan", "--dir", d]);
    assert_eq!(o.status.code(), Some(0));
    let t = text(&o);
    assert!(t.contains("~ update a in place (hot reload, no restart) [stopped: the change is recorded, the sandbox stays stopped]"), "{t}");
    assert!(
        t.contains("+  egress:\n") || t.contains("+network:\n"),
        "{t}"
    );

    std::fs::write(&a, blueprint("a", "resources:\n  memory: 1Gi\n")).unwrap();
    let o = nemoclaw(&home, &["plan", "--dir", d, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["changes"][0]["action"], "replace");
    assert_eq!(
        v["changes"][0]["reasons"][0],
        "resources.memory changed (needs a restart)"
    );
    assert_eq!(v["summary"]["replace"], 1);
    assert!(v["changes"][0]["diff"]
        .as_str()
        .unwrap()
        .contains("+  memory: 1Gi"));
}

#[test]
fn prune_destroys_only_when_asked_and_never_everything_by_accident() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, src) = (tmp.path().join("home"), tmp.path().join("src"));
    std::fs::create_dir_all(&src).unwrap();
    let old = tmp.path().join("old.yaml");
    std::fs::write(&old, blueprint("old", "")).unwrap();
    deploy(&home, &old);
    let d = src.to_str().unwrap();
    let o = nemoclaw(&home, &["plan", "--dir", d]);
    assert!(
        text(&o).contains("old: not in the source: kept"),
        "{}",
        text(&o)
    );
    let o = nemoclaw(&home, &["plan", "--dir", d, "--prune"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("pruning would destroy all 1 deployed sandboxes"),
        "{}",
        text(&o)
    );
    let o = nemoclaw(&home, &["plan", "--dir", d, "--prune", "--allow-empty"]);
    assert!(text(&o).contains("- destroy old"), "{}", text(&o));
    // `prune: true` in the source config works like --prune.
    std::fs::write(src.join("keep.yaml"), blueprint("keep", "")).unwrap();
    std::fs::write(src.join("nemoclaw.yaml"), "prune: true\n").unwrap();
    let o = nemoclaw(&home, &["plan", "--dir", d]);
    assert!(text(&o).contains("- destroy old"), "{}", text(&o));
    assert!(
        text(&o)
            .contains("Plan: 1 to create, 0 to update, 0 to upgrade, 0 to replace, 1 to destroy."),
        "{}",
        text(&o)
    );
}

#[test]
fn invalid_blueprints_stop_the_plan_with_their_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("bad.yaml"),
        blueprint("bad", "resources:\n  memory: -1\n"),
    )
    .unwrap();
    let o = nemoclaw(
        &tmp.path().join("home"),
        &[
            "plan",
            "--dir",
            src.to_str().unwrap(),
            "--detailed-exitcode",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "an error is 1, never 2");
    let t = text(&o);
    assert!(t.contains("bad.yaml:9:11: error[schema.invalid]"), "{t}");
    assert!(t.contains("nothing was planned"), "{t}");
}

#[test]
fn git_source_at_a_ref_and_path_shows_the_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    let repo = git2::Repository::init(&repo_dir).unwrap();
    std::fs::create_dir_all(repo_dir.join("agents")).unwrap();
    std::fs::write(repo_dir.join("agents/a.yaml"), blueprint("from-git", "")).unwrap();
    let mut idx = repo.index().unwrap();
    idx.add_path(Path::new("agents/a.yaml")).unwrap();
    idx.write().unwrap();
    let tree = repo.find_tree(idx.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::now("t", "t@example.com").unwrap();
    let oid = repo
        .commit(Some("HEAD"), &sig, &sig, "add a", &tree, &[])
        .unwrap();
    repo.tag_lightweight("release-1", &repo.find_object(oid, None).unwrap(), false)
        .unwrap();
    let url = format!("file://{}", repo_dir.display());
    let home = tmp.path().join("home");
    let o = nemoclaw(
        &home,
        &[
            "plan",
            "--git",
            &url,
            "--ref",
            "release-1",
            "--path",
            "agents",
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["source"]["kind"], "git");
    assert_eq!(v["source"]["commit"], oid.to_string());
    assert_eq!(v["changes"][0]["name"], "from-git");
    let o = nemoclaw(
        &home,
        &[
            "plan",
            "--git",
            &url,
            "--ref",
            "release-1",
            "--path",
            "agents",
        ],
    );
    assert!(
        text(&o).starts_with(&format!("Source: {url} at {}", &oid.to_string()[..12])),
        "{}",
        text(&o)
    );
    let o = nemoclaw(&home, &["plan", "--git", &url, "--ref", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("`nope` is neither a branch, a tag nor a commit"),
        "{}",
        text(&o)
    );
}

#[test]
fn saved_plan_records_what_was_planned() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, src) = (tmp.path().join("home"), tmp.path().join("src"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.yaml"), blueprint("a", "")).unwrap();
    let file = tmp.path().join("plan.json");
    let o = nemoclaw(
        &home,
        &[
            "plan",
            "--dir",
            src.to_str().unwrap(),
            "-o",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let saved = nemoclaw::reconcile::saved::SavedPlan::read(&file).unwrap();
    assert_eq!(saved.desired.len(), 1);
    assert_eq!(saved.inventory_generation, 0);
    assert!(saved.fingerprint.starts_with("sha256:"));
    assert!(text(&o).contains(&format!("Saved the plan to {}", file.display())));
}
