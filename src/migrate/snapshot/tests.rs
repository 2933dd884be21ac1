use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::*;
use crate::migrate::tree::tree_hash;

struct Lab {
    _tmp: tempfile::TempDir,
    state: PathBuf,
    snaps: PathBuf,
}

fn lab() -> Lab {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state").join("agent");
    let snaps = tmp.path().join("snapshots").join("agent");
    fs::create_dir_all(state.join("sessions")).unwrap();
    fs::write(state.join("sessions/1.json"), b"{\"title\": \"one\"}\n").unwrap();
    fs::write(state.join("memory.md"), b"# memory\nlikes tea\n").unwrap();
    std::os::unix::fs::symlink("sessions/1.json", state.join("latest")).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::lchown(&state, Some(1234), Some(1234)).unwrap();
    Lab {
        _tmp: tmp,
        state,
        snaps,
    }
}

fn req(version: u32, kind: Kind) -> Request<'static> {
    Request {
        version,
        kind,
        attachments: &[],
        sqlite_backup: false,
    }
}

fn ids(snaps: &Path) -> Vec<String> {
    list(snaps).unwrap().into_iter().map(|i| i.id).collect()
}

#[test]
fn restore_after_changes_gives_back_the_tree_byte_for_byte() {
    let lab = lab();
    let before = tree_hash(&lab.state).unwrap();
    let info = create(&lab.snaps, &lab.state, &req(2, Kind::Upgrade)).unwrap();
    assert!(info.id.ends_with("-v2"), "{}", info.id);
    assert_eq!(
        (info.version, info.kind, info.files, info.bytes),
        (2, Kind::Upgrade, 2, 36)
    );
    assert_eq!(list(&lab.snaps).unwrap(), vec![info.clone()]);

    fs::write(lab.state.join("memory.md"), b"rewritten").unwrap();
    fs::remove_dir_all(lab.state.join("sessions")).unwrap();
    fs::write(lab.state.join("new.json"), b"{}").unwrap();
    fs::set_permissions(&lab.state, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::lchown(&lab.state, Some(0), Some(0)).unwrap();
    assert_ne!(tree_hash(&lab.state).unwrap(), before);

    restore(&info, &lab.state).unwrap();
    assert_eq!(tree_hash(&lab.state).unwrap(), before);
    let root = fs::metadata(&lab.state).unwrap();
    assert_eq!(
        (root.mode() & 0o7777, root.uid(), root.gid()),
        (0o750, 1234, 1234)
    );
    let parent = lab.state.parent().unwrap();
    assert_eq!(
        fs::read_dir(parent).unwrap().count(),
        1,
        "no sibling left beside the state dir"
    );
}

#[test]
fn restore_recreates_a_state_dir_that_is_gone() {
    let lab = lab();
    let before = tree_hash(&lab.state).unwrap();
    let info = create(&lab.snaps, &lab.state, &req(1, Kind::Upgrade)).unwrap();
    fs::remove_dir_all(&lab.state).unwrap();
    restore(&info, &lab.state).unwrap();
    assert_eq!(tree_hash(&lab.state).unwrap(), before);
}

#[test]
fn a_flipped_byte_in_the_snapshot_is_refused_and_the_state_left_alone() {
    let lab = lab();
    let info = create(&lab.snaps, &lab.state, &req(1, Kind::Upgrade)).unwrap();
    fs::write(lab.state.join("memory.md"), b"changed since").unwrap();
    let changed = tree_hash(&lab.state).unwrap();
    let victim = info.path.join(STATE).join("sessions/1.json");
    let mut bytes = fs::read(&victim).unwrap();
    bytes[3] ^= 0x20;
    fs::write(&victim, bytes).unwrap();

    let err = restore(&info, &lab.state).unwrap_err();
    assert!(matches!(err, SnapshotError::Corrupt { .. }), "{err}");
    assert!(
        err.to_string().contains(&victim.display().to_string()),
        "{err}"
    );
    assert_eq!(tree_hash(&lab.state).unwrap(), changed);
    let parent = lab.state.parent().unwrap();
    assert_eq!(
        fs::read_dir(parent).unwrap().count(),
        1,
        "the half restore is removed"
    );
}

#[test]
fn a_file_added_to_or_removed_from_the_snapshot_is_refused() {
    let lab = lab();
    let info = create(&lab.snaps, &lab.state, &req(1, Kind::Upgrade)).unwrap();
    let extra = info.path.join(STATE).join("sessions/2.json");
    fs::write(&extra, b"{}").unwrap();
    let err = restore(&info, &lab.state).unwrap_err().to_string();
    assert!(
        err.contains("sessions/2.json is not in the manifest"),
        "{err}"
    );
    fs::remove_file(&extra).unwrap();
    fs::remove_file(info.path.join(STATE).join("latest")).unwrap();
    let err = restore(&info, &lab.state).unwrap_err().to_string();
    assert!(err.contains("latest is missing"), "{err}");
}

#[test]
fn a_partial_snapshot_is_not_listed_and_the_next_create_removes_it() {
    let lab = lab();
    let first = create(&lab.snaps, &lab.state, &req(1, Kind::Upgrade)).unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = [
        lab.snaps.join(".partial-junk"),
        lab.snaps
            .join(format!(".partial-{dead}-20261207T231653.123Z")),
    ];
    let live = lab
        .snaps
        .join(format!(".partial-{}-busy", std::process::id()));
    for dir in stale.iter().chain([&live]) {
        fs::create_dir_all(dir.join("state")).unwrap();
    }
    assert_eq!(ids(&lab.snaps), vec![first.id.clone()]);
    let second = create(&lab.snaps, &lab.state, &req(2, Kind::Upgrade)).unwrap();
    assert_eq!(ids(&lab.snaps), vec![first.id, second.id]);
    assert!(stale.iter().all(|d| !d.exists()), "stale partials removed");
    assert!(live.exists(), "the partial of a live process is kept");
}

#[test]
fn prune_keeps_the_newest_of_a_kind_and_never_touches_the_other() {
    let lab = lab();
    let mut made = Vec::new();
    for (v, kind) in [
        (1, Kind::Upgrade),
        (1, Kind::Checkpoint),
        (2, Kind::Upgrade),
        (3, Kind::Upgrade),
        (3, Kind::Checkpoint),
        (4, Kind::Upgrade),
    ] {
        made.push(create(&lab.snaps, &lab.state, &req(v, kind)).unwrap().id);
    }
    assert_eq!(ids(&lab.snaps), made, "oldest first");
    let removed = prune(&lab.snaps, Kind::Upgrade, 2).unwrap();
    assert_eq!(removed, vec![made[0].clone(), made[2].clone()]);
    assert_eq!(
        ids(&lab.snaps),
        vec![
            made[1].clone(),
            made[3].clone(),
            made[4].clone(),
            made[5].clone()
        ]
    );
    assert_eq!(
        prune(&lab.snaps, Kind::Checkpoint, 5).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(prune(&lab.snaps, Kind::Checkpoint, 0).unwrap().len(), 2);
    assert!(made[4].ends_with("-v3-checkpoint"), "{}", made[4]);
    assert_eq!(ids(&lab.snaps), vec![made[3].clone(), made[5].clone()]);
    assert_eq!(
        fs::read_dir(&lab.snaps).unwrap().count(),
        2,
        "nothing left behind"
    );
}

#[test]
fn stamps_are_unique_and_find_takes_an_id_or_a_unique_prefix() {
    let lab = lab();
    let made: Vec<Info> = (0..4)
        .map(|_| create(&lab.snaps, &lab.state, &req(1, Kind::Upgrade)).unwrap())
        .collect();
    let mut stamps: Vec<&str> = made
        .iter()
        .map(|i| i.id.split("-v").next().unwrap())
        .collect();
    stamps.dedup();
    assert_eq!(stamps.len(), 4, "{stamps:?}");
    assert_eq!(
        ids(&lab.snaps),
        made.iter().map(|i| i.id.clone()).collect::<Vec<_>>()
    );

    fs::create_dir(lab.snaps.join("20261207T231653.123Z-v9")).unwrap();
    assert_eq!(
        unique_stamp(&lab.snaps, "20261207T231653.123Z").unwrap(),
        "20261207T231653.123Z.1"
    );
    fs::remove_dir(lab.snaps.join("20261207T231653.123Z-v9")).unwrap();

    assert_eq!(find(&lab.snaps, &made[2].id).unwrap(), made[2]);
    let stamp = made[1].id.split("-v").next().unwrap();
    assert_eq!(find(&lab.snaps, stamp).unwrap(), made[1]);
    let err = find(&lab.snaps, "2").unwrap_err();
    assert!(
        matches!(err, SnapshotError::Ambiguous { ref matches, .. } if matches.len() == 4),
        "{err}"
    );
    let err = find(&lab.snaps, "1999").unwrap_err();
    assert!(matches!(err, SnapshotError::NotFound { .. }), "{err}");
}

#[test]
fn attachments_are_stored_beside_the_state() {
    let lab = lab();
    let request = Request {
        attachments: &[
            ("blueprint.yaml", b"name: agent\n"),
            ("deployed.json", b"{}"),
        ],
        ..req(3, Kind::Upgrade)
    };
    let info = create(&lab.snaps, &lab.state, &request).unwrap();
    assert_eq!(
        attachment(&info, "blueprint.yaml").unwrap().unwrap(),
        b"name: agent\n"
    );
    assert_eq!(attachment(&info, "deployed.json").unwrap().unwrap(), b"{}");
    assert_eq!(attachment(&info, "other.yaml").unwrap(), None);
    for bad in ["manifest.json", "state", "../x", ".hidden", ""] {
        let request = Request {
            attachments: &[(bad, b"")],
            ..req(3, Kind::Upgrade)
        };
        let err = create(&lab.snaps, &lab.state, &request).unwrap_err();
        assert!(
            matches!(err, SnapshotError::AttachmentName(_)),
            "{bad}: {err}"
        );
    }
    assert_eq!(ids(&lab.snaps).len(), 1);
}

#[test]
fn the_manifest_records_each_file() {
    let lab = lab();
    let info = create(&lab.snaps, &lab.state, &req(5, Kind::Checkpoint)).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(info.path.join(MANIFEST)).unwrap()).unwrap();
    assert_eq!(json["format"], 1);
    assert_eq!(json["version"], 5);
    assert_eq!(json["kind"], "checkpoint");
    assert_eq!(json["root"]["mode"], 0o750);
    let files = json["files"].as_array().unwrap();
    let memory = files.iter().find(|f| f["path"] == "memory.md").unwrap();
    assert_eq!(memory["type"], "file");
    assert_eq!(memory["size"], 19);
    assert_eq!(memory["sha256"].as_str().unwrap().len(), 64);
    let latest = files.iter().find(|f| f["path"] == "latest").unwrap();
    assert_eq!(latest["target"], "sessions/1.json");
}

fn wal_db(path: &Path) -> Connection {
    let db = Connection::open(path).unwrap();
    db.pragma_update(None, "journal_mode", "WAL").unwrap();
    db.execute_batch("CREATE TABLE IF NOT EXISTS m (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        .unwrap();
    db
}

#[test]
fn sqlite_backup_of_a_database_being_written_is_consistent() {
    let lab = lab();
    let db_path = lab.state.join("state.db");
    wal_db(&db_path);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, db_path) = (stop.clone(), db_path.clone());
        std::thread::spawn(move || {
            let mut db = wal_db(&db_path);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let tx = db.transaction().unwrap();
                for _ in 0..20 {
                    tx.execute("INSERT INTO m (body) VALUES (?1)", [format!("{n:0>500}")])
                        .unwrap();
                    n += 1;
                }
                tx.commit().unwrap();
            }
            n
        })
    };
    while !lab.state.join("state.db-wal").exists() {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    let request = Request {
        sqlite_backup: true,
        ..req(1, Kind::Checkpoint)
    };
    let info = create(&lab.snaps, &lab.state, &request).unwrap();
    stop.store(true, Ordering::Relaxed);
    assert!(writer.join().unwrap() > 0);

    let copy = info.path.join(STATE);
    let names: Vec<String> = fs::read_dir(&copy)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with("state.db-")),
        "{names:?}"
    );
    // Checked on a copy: opening a WAL database writes beside it.
    let check = lab.snaps.parent().unwrap().join("check.db");
    fs::copy(copy.join("state.db"), &check).unwrap();
    let db = Connection::open(&check).unwrap();
    let ok: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let rows: i64 = db
        .query_row("SELECT count(*) FROM m", [], |r| r.get(0))
        .unwrap();
    assert!(
        rows > 0 && rows % 20 == 0,
        "whole transactions only: {rows}"
    );
    // The manifest holds the hash of the backup copy.
    restore(&info, &lab.state).unwrap();
}

#[test]
fn a_database_busy_for_a_second_is_copied_raw_with_its_journal() {
    let lab = lab();
    let db_path = lab.state.join("busy.db");
    let db = Connection::open(&db_path).unwrap();
    db.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    db.execute_batch("BEGIN EXCLUSIVE; INSERT INTO t VALUES (2);")
        .unwrap();
    let request = Request {
        sqlite_backup: true,
        ..req(1, Kind::Checkpoint)
    };
    let started = Instant::now();
    let info = create(&lab.snaps, &lab.state, &request).unwrap();
    assert!(started.elapsed() >= crate::migrate::tree::BUSY_LIMIT);
    let copy = info.path.join(STATE);
    assert_eq!(
        fs::read(copy.join("busy.db")).unwrap(),
        fs::read(&db_path).unwrap()
    );
    assert_eq!(
        fs::read(copy.join("busy.db-journal")).unwrap(),
        fs::read(lab.state.join("busy.db-journal")).unwrap()
    );
    db.execute_batch("ROLLBACK").unwrap();
}
