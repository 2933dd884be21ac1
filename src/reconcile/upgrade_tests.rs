//! The upgrade transaction against an in-memory runtime and real state trees: commit, roll back
//! on a failing script or an unhealthy new version, and recovery from a journal left by a crash.

use std::path::Path;

use super::apply::{execute, Origins, Outcome, Runtime};
use super::fake_runtime::Fake;
use super::inventory::{HoldKind, Inventory};
use super::plan::{plan, ChangeKind, DesiredEntry, PlanOptions};
use super::upgrade::recover;
use crate::blueprint::load::parse_str;
use crate::home::Home;
use crate::migrate::journal::{self, Phase};
use crate::migrate::snapshot;
use crate::migrate::tree::tree_hash;

struct Setup {
    _dir: tempfile::TempDir,
    home: Home,
    src: std::path::PathBuf,
    rt: Fake,
}

fn setup(rt: Fake) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::at(dir.path().join("home"));
    home.ensure().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("migrations")).unwrap();
    Setup {
        _dir: dir,
        home,
        src,
        rt,
    }
}

fn entry(version: u32, steps: Vec<u32>) -> DesiredEntry {
    let blueprint = parse_str(&format!("apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: a\n  version: {version}\nagent:\n  type: demo\nmigrations:\n  dir: migrations\n")).unwrap();
    DesiredEntry {
        blueprint,
        migration_steps: steps,
        plugin_hash: None,
    }
}

impl Setup {
    fn apply(&self, want: &DesiredEntry) -> Vec<Outcome> {
        let actual = self.rt.actual(&self.home);
        let p = plan(std::slice::from_ref(want), &actual, &PlanOptions::default()).unwrap();
        let mut origins = Origins::default();
        origins
            .by_name
            .insert("a".into(), (Default::default(), self.src.clone()));
        execute(&self.home, &p, &origins, &self.rt, 1, &|_| {})
    }

    fn state(&self) -> std::path::PathBuf {
        self.home.state("a")
    }

    fn version(&self) -> u32 {
        Inventory::load(&self.home)
            .unwrap()
            .get("a")
            .unwrap()
            .version
    }
}

fn write(dir: &Path, rel: &str, text: &str) {
    std::fs::create_dir_all(dir.join(rel).parent().unwrap()).unwrap();
    std::fs::write(dir.join(rel), text).unwrap();
}

/// Deploys v1 with some state, then writes `script` as v2.rhai.
fn at_v1(rt: Fake, script: &str) -> Setup {
    let s = setup(rt);
    assert!(s.apply(&entry(1, vec![]))[0].result.is_ok());
    write(&s.state(), "data.json", "{\"v\": 1}\n");
    write(&s.state(), "keep/me.txt", "kept\n");
    write(&s.src, "migrations/v2.rhai", script);
    s
}

#[test]
fn an_upgrade_stops_snapshots_migrates_starts_and_commits() {
    let s = at_v1(
        Fake::default(),
        "state.write_json(\"data.json\", #{v: to});",
    );
    let out = s.apply(&entry(2, vec![2]));
    assert_eq!(out[0].kind, ChangeKind::Upgrade);
    assert!(out[0].result.is_ok(), "{:?}", out[0].result);
    assert!(
        out[0].upgrade.is_some(),
        "a committed upgrade reports its timings"
    );
    assert_eq!(s.rt.calls(), ["start a", "stop a", "start a"]);
    assert_eq!(s.version(), 2);
    assert_eq!(
        std::fs::read_to_string(s.state().join("data.json")).unwrap(),
        "{\n  \"v\": 2\n}\n"
    );
    assert_eq!(journal::read(&s.home, "a").unwrap(), None);
    let snaps = snapshot::list(&s.home.snapshots("a")).unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].version, 1);
}

fn assert_rolled_back(s: &Setup, before: &str, out: &[Outcome], cause: &str) {
    let e = crate::error_chain(out[0].result.as_ref().unwrap_err());
    assert!(e.contains("rolled back") && e.contains(cause), "{e}");
    assert_eq!(
        tree_hash(&s.state()).unwrap(),
        before,
        "state restored byte for byte"
    );
    assert_eq!(s.version(), 1);
    let rec = Inventory::load(&s.home).unwrap().get("a").cloned().unwrap();
    assert_eq!(rec.hold.unwrap().kind, HoldKind::UpgradeFailed);
    assert!(s.rt.is_running("a"), "the old version runs again");
    assert_eq!(journal::read(&s.home, "a").unwrap(), None);
}

#[test]
fn a_failing_script_restores_the_state_and_restarts_the_old_version() {
    let s = at_v1(
        Fake::default(),
        "state.remove(\"keep\"); state.write_text(\"new\", \"x\"); throw \"boom\";",
    );
    let before = tree_hash(&s.state()).unwrap();
    let out = s.apply(&entry(2, vec![2]));
    assert_rolled_back(&s, &before, &out, "boom");
    // Held: the same blueprint is not tried again.
    assert!(s.apply(&entry(2, vec![2])).is_empty());
}

#[test]
fn an_unhealthy_new_version_is_rolled_back() {
    let rt = Fake {
        unhealthy: ["a".to_string()].into(),
        ..Default::default()
    };
    let s = at_v1(rt, "state.write_json(\"data.json\", #{v: 2});");
    let before = tree_hash(&s.state()).unwrap();
    let out = s.apply(&entry(2, vec![2]));
    assert_rolled_back(&s, &before, &out, "health check");
    assert_eq!(
        s.rt.calls(),
        ["start a", "stop a", "start a", "stop a", "start a"]
    );
}

#[test]
fn an_interrupted_upgrade_is_rolled_back_by_recover() {
    let s = at_v1(Fake::default(), "");
    let before = tree_hash(&s.state()).unwrap();
    let old_record = std::fs::read_to_string(s.home.deployed_record("a")).unwrap();
    // What a crash during the scripts leaves: a journal naming a complete snapshot, a state
    // half migrated.
    let info = snapshot::create(
        &s.home.snapshots("a"),
        &s.state(),
        &snapshot::Request {
            version: 1,
            kind: snapshot::Kind::Upgrade,
            attachments: &[],
            sqlite_backup: false,
        },
    )
    .unwrap();
    journal::Journal {
        format: journal::JOURNAL_FORMAT,
        name: "a".into(),
        from: 1,
        to: 2,
        phase: Phase::Migrating,
        snapshot: Some(info.id),
        was_running: true,
        old_record: old_record.clone(),
        old_blueprint: std::fs::read_to_string(s.home.deployed_blueprint("a")).unwrap(),
        started_at: 0,
    }
    .save(&s.home)
    .unwrap();
    write(&s.state(), "data.json", "half");
    std::fs::remove_dir_all(s.state().join("keep")).unwrap();
    let r = recover(&s.home, &s.rt, "a").unwrap().unwrap();
    assert!(r.restored);
    assert_eq!(tree_hash(&s.state()).unwrap(), before);
    assert_eq!(journal::read(&s.home, "a").unwrap(), None);
    assert_eq!(s.version(), 1);
    assert!(!s.rt.is_running("a"), "recover starts nothing");
    assert_eq!(recover(&s.home, &s.rt, "a").unwrap(), None);
}
