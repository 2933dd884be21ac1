use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

use super::*;

/// A state dir and, beside it (outside it), a host dir with a file the tests must never change.
struct Fixture {
    _tmp: tempfile::TempDir,
    state: std::path::PathBuf,
    host_file: std::path::PathBuf,
}

const HOST_BYTES: &[u8] = b"root:x:0:0:host secret\n";

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let host = tmp.path().join("host");
    fs::create_dir_all(&state).unwrap();
    fs::create_dir_all(&host).unwrap();
    let host_file = host.join("passwd");
    fs::write(&host_file, HOST_BYTES).unwrap();
    Fixture {
        _tmp: tmp,
        state,
        host_file,
    }
}

fn is_refused(r: Result<impl std::fmt::Debug, ConfineError>) -> String {
    match r {
        Err(e @ ConfineError::Refused { .. }) => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn dotdot_absolute_empty_and_nul_are_refused() {
    let f = fixture();
    let root = StateRoot::open(&f.state).unwrap();
    for p in [
        "../host/passwd",
        "a/../../host/passwd",
        "a/..",
        "/etc/passwd",
        "",
        "a\0b",
    ] {
        let msg = is_refused(root.read(p, 1 << 20));
        assert!(msg.contains(&format!("`{p}`")), "{msg}");
        is_refused(root.write(p, b"x"));
    }
    let host = f.host_file.to_str().unwrap();
    is_refused(root.write(host, b"pwned"));
    is_refused(root.remove(host));
    assert_eq!(fs::read(&f.host_file).unwrap(), HOST_BYTES);
}

#[test]
fn symlinks_leading_outside_are_refused_and_the_host_file_is_untouched() {
    let f = fixture();
    symlink(&f.host_file, f.state.join("abs")).unwrap();
    symlink("../host/passwd", f.state.join("rel")).unwrap();
    symlink(f.host_file.parent().unwrap(), f.state.join("hostdir")).unwrap();
    let root = StateRoot::open(&f.state).unwrap();
    for p in ["abs", "rel"] {
        let msg = is_refused(root.read(p, 1 << 20));
        assert!(msg.contains("outside the state dir"), "{msg}");
        is_refused(root.write(p, b"pwned"));
        is_refused(root.append(p, b"pwned"));
        is_refused(root.copy(p, "copied"));
        is_refused(root.exists(p));
    }
    is_refused(root.write("hostdir/passwd", b"pwned"));
    is_refused(root.read("hostdir/passwd", 1 << 20));
    is_refused(root.open_sqlite("hostdir/db.sqlite").map(|_| ()));
    // Listing never follows the link into the host dir; removing removes the link itself.
    assert_eq!(root.list("**").unwrap(), ["abs", "hostdir", "rel"]);
    assert!(root.remove("hostdir").unwrap());
    assert_eq!(fs::read(&f.host_file).unwrap(), HOST_BYTES);
    assert!(f.host_file.parent().unwrap().is_dir());
}

#[test]
fn hard_links_to_a_host_file_are_refused_and_the_host_file_is_untouched() {
    let f = fixture();
    fs::hard_link(&f.host_file, f.state.join("hl")).unwrap();
    fs::hard_link(&f.host_file, f.state.join("hl.db")).unwrap();
    let root = StateRoot::open(&f.state).unwrap();
    let msg = is_refused(root.read("hl", 1 << 20));
    assert!(msg.contains("hard links"), "{msg}");
    is_refused(root.write("hl", b"pwned"));
    is_refused(root.append("hl", b"pwned"));
    is_refused(root.copy("hl", "copied"));
    is_refused(root.rename("hl", "moved"));
    is_refused(root.open_sqlite("hl.db").map(|_| ()));
    assert_eq!(fs::read(&f.host_file).unwrap(), HOST_BYTES);
    assert!(!f.state.join("copied").exists());
}

#[test]
fn a_symlink_staying_inside_is_followed_and_kept() {
    let f = fixture();
    fs::create_dir(f.state.join("cfg")).unwrap();
    fs::write(f.state.join("cfg/real.json"), b"{}").unwrap();
    symlink("cfg/real.json", f.state.join("current.json")).unwrap();
    symlink("cfg", f.state.join("cfglink")).unwrap();
    let root = StateRoot::open(&f.state).unwrap();
    assert_eq!(root.read("current.json", 100).unwrap(), b"{}");
    root.write("current.json", b"{\"a\":1}").unwrap();
    assert!(fs::symlink_metadata(f.state.join("current.json"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        fs::read(f.state.join("cfg/real.json")).unwrap(),
        b"{\"a\":1}"
    );
    root.write("cfglink/new.txt", b"n").unwrap();
    assert_eq!(fs::read(f.state.join("cfg/new.txt")).unwrap(), b"n");
    assert!(root.is_dir("cfglink").unwrap());
}

#[test]
fn a_file_over_the_limit_is_refused_before_reading() {
    let f = fixture();
    fs::write(f.state.join("big"), vec![b'x'; 2000]).unwrap();
    let root = StateRoot::open(&f.state).unwrap();
    assert!(matches!(
        root.read("big", 1000),
        Err(ConfineError::TooLarge {
            size: 2000,
            limit: 1000,
            ..
        })
    ));
}

#[test]
fn writes_are_atomic_keep_mode_and_create_parents() {
    let f = fixture();
    let root = StateRoot::open(&f.state).unwrap();
    fs::write(f.state.join("secret"), b"old").unwrap();
    fs::set_permissions(f.state.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    root.write("secret", b"new").unwrap();
    let meta = fs::metadata(f.state.join("secret")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o600);
    root.write("deep/er/file.txt", b"x").unwrap();
    assert_eq!(fs::read(f.state.join("deep/er/file.txt")).unwrap(), b"x");
    root.append("deep/log", b"a").unwrap();
    root.append("deep/log", b"b").unwrap();
    assert_eq!(fs::read(f.state.join("deep/log")).unwrap(), b"ab");
    // No temporary file is left behind.
    assert_eq!(
        root.list("**").unwrap(),
        ["deep", "deep/er", "deep/er/file.txt", "deep/log", "secret"]
    );
}

#[test]
fn new_files_and_dirs_get_the_state_dirs_owner_and_modes() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to chown");
        return;
    }
    let f = fixture();
    std::os::unix::fs::chown(&f.state, Some(1234), Some(1234)).unwrap();
    let root = StateRoot::open(&f.state).unwrap();
    root.write("a/b.json", b"{}").unwrap();
    root.append("c.jsonl", b"1\n").unwrap();
    root.mkdir("d/e").unwrap();
    drop(root.open_sqlite("f.db").unwrap());
    for (p, mode) in [
        ("a", 0o755),
        ("a/b.json", 0o644),
        ("c.jsonl", 0o644),
        ("d", 0o755),
        ("d/e", 0o755),
        ("f.db", 0o644),
    ] {
        let m = fs::metadata(f.state.join(p)).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7777),
            (1234, 1234, mode),
            "{p}"
        );
    }
    // A replaced file keeps its owner.
    std::os::unix::fs::chown(f.state.join("a/b.json"), Some(4321), Some(4321)).unwrap();
    root.write("a/b.json", b"[]").unwrap();
    assert_eq!(fs::metadata(f.state.join("a/b.json")).unwrap().uid(), 4321);
}

fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            for (n, b) in tree(&e.path()) {
                out.push((format!("{name}/{n}"), b));
            }
        } else if ft.is_symlink() {
            out.push((
                name,
                fs::read_link(e.path())
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes(),
            ));
        } else {
            out.push((name, fs::read(e.path()).unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn list_copy_rename_remove_and_mkdir() {
    let f = fixture();
    let root = StateRoot::open(&f.state).unwrap();
    root.write("sessions/a.json", b"1").unwrap();
    root.write("sessions/sub/b.json", b"2").unwrap();
    root.write("sessions/c.txt", b"3").unwrap();
    symlink("a.json", f.state.join("sessions/link")).unwrap();
    assert_eq!(root.list("sessions/*.json").unwrap(), ["sessions/a.json"]);
    assert_eq!(
        root.list("**/*.json").unwrap(),
        ["sessions/a.json", "sessions/sub/b.json"]
    );
    root.copy("sessions", "backup").unwrap();
    assert_eq!(
        tree(&f.state.join("sessions")),
        tree(&f.state.join("backup"))
    );
    is_refused(root.copy("sessions", "backup"));
    root.copy("sessions", "sessions/inner").unwrap();
    assert_eq!(
        fs::read(f.state.join("sessions/inner/sub/b.json")).unwrap(),
        b"2"
    );
    assert!(!f.state.join("sessions/inner/inner").exists());
    root.rename("sessions/c.txt", "moved/to/c.txt").unwrap();
    assert_eq!(fs::read(f.state.join("moved/to/c.txt")).unwrap(), b"3");
    assert!(root.remove("backup").unwrap());
    assert!(!root.remove("backup").unwrap());
    assert!(!root.exists("backup").unwrap());
    root.mkdir("x/y").unwrap();
    root.mkdir("x/y").unwrap();
    assert!(root.is_dir("x/y").unwrap());
    is_refused(root.mkdir("moved/to/c.txt"));
    is_refused(root.list("../*"));
}
