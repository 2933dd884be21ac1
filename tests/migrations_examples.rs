//! The migration examples in migrations-examples/: for each, the state in `before/` is copied to a
//! temporary directory, every script of its blueprint runs on it through the real engine, and the
//! result must equal `after/` byte for byte: every file, no file missing, none extra. Running the
//! scripts a second time must change nothing. An example with SQLite state keeps it as SQL
//! (`before.sql`, `after.sql`: binary fixtures would hide their content from review); the test
//! builds `state.db` from `before.sql` and compares the migrated database with one built from
//! `after.sql` by a canonical dump.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "tests"
)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nemoclaw::blueprint::load::{load_file, Document};
use nemoclaw::blueprint::Blueprint;
use nemoclaw::migrate::engine::{run, steps_in, RunInput};

/// The database an example's `before.sql` and `after.sql` describe, relative to the state dir.
const DB_FILE: &str = "state.db";

fn examples_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations-examples")
}

/// Every example directory, sorted.
fn examples() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(examples_root())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn blueprint(example: &Path) -> Blueprint {
    let file = example.join("blueprint.yaml");
    match load_file(&file)
        .unwrap_or_else(|d| panic!("{}: {d:?}", file.display()))
        .doc
    {
        Document::Blueprint(bp) => *bp,
        _ => panic!("{} is not a blueprint", file.display()),
    }
}

/// Copies a fixture tree (directories and regular files only: fixtures hold nothing else).
fn copy_fixture(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for entry in fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let kind = entry.file_type().unwrap();
        assert!(
            kind.is_dir() || kind.is_file(),
            "{}: fixtures hold only files and directories",
            from.display()
        );
        if kind.is_dir() {
            copy_fixture(&from, &to);
        } else {
            fs::copy(&from, &to).unwrap();
        }
    }
}

/// What a tree holds, by relative path: `None` for a directory, the bytes for anything else (a
/// symlink as its target, so that one standing in for a file never compares equal to it).
type Tree = BTreeMap<String, Option<Vec<u8>>>;

fn read_tree(root: &Path) -> Tree {
    let mut tree = Tree::new();
    walk(root, root, &mut tree);
    tree
}

fn walk(root: &Path, dir: &Path, tree: &mut Tree) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let meta = fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            tree.insert(rel, None);
            walk(root, &path, tree);
        } else if meta.is_symlink() {
            let target = fs::read_link(&path).unwrap();
            let mut bytes = b"symlink -> ".to_vec();
            bytes.extend_from_slice(target.as_os_str().as_encoded_bytes());
            tree.insert(rel, Some(bytes));
        } else {
            tree.insert(rel, Some(fs::read(&path).unwrap()));
        }
    }
}

/// Every difference between two trees, one line each (with both texts for a changed file).
fn tree_differences(expected: &Tree, actual: &Tree) -> Vec<String> {
    let mut out = Vec::new();
    for (path, want) in expected {
        match actual.get(path) {
            None => out.push(format!("missing: {path}")),
            Some(got) if got != want => out.push(format!(
                "differs: {path}\n--- expected\n{}\n--- actual\n{}",
                show(want.as_deref()),
                show(got.as_deref())
            )),
            Some(_) => {}
        }
    }
    for path in actual.keys().filter(|p| !expected.contains_key(*p)) {
        out.push(format!("extra: {path}"));
    }
    out
}

fn show(content: Option<&[u8]>) -> String {
    content.map_or_else(
        || "(a directory)".to_string(),
        |b| String::from_utf8_lossy(b).into_owned(),
    )
}

fn build_db(sql_file: &Path, db: &Path) {
    let sql = fs::read_to_string(sql_file).unwrap();
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(&sql)
        .unwrap_or_else(|e| panic!("{}: {e}", sql_file.display()));
}

/// A database as text, independent of how it was built: `user_version`, every table's columns
/// (name, type, not null, default, primary key), every index, view and trigger (its SQL with
/// whitespace collapsed), and every row of every table in order of all its columns.
fn canonical_dump(db: &Path) -> String {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    let mut out = format!("user_version {version}\n");
    let objects: Vec<(String, String, Option<String>)> = conn
        .prepare(
            "SELECT type, name, sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' \
             ORDER BY type, name",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (kind, name, sql) in objects {
        if kind == "table" {
            out += &dump_table(&conn, &name);
        } else {
            let sql = sql.unwrap_or_default();
            let sql: Vec<&str> = sql.split_whitespace().collect();
            out += &format!("{kind} {name}: {}\n", sql.join(" "));
        }
    }
    out
}

fn dump_table(conn: &rusqlite::Connection, table: &str) -> String {
    let mut out = format!("table {table}\n");
    let mut info = conn
        .prepare("SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1)")
        .unwrap();
    let columns = info
        .query_map([table], |r| {
            Ok(format!(
                "  column {} {} notnull={} default={:?} pk={}",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, i64>(4)?
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect::<Vec<_>>();
    for c in &columns {
        out += c;
        out += "\n";
    }
    let order: Vec<String> = (1..=columns.len()).map(|i| i.to_string()).collect();
    let quoted = table.replace('"', "\"\"");
    let mut rows = conn
        .prepare(&format!(
            "SELECT * FROM \"{quoted}\" ORDER BY {}",
            order.join(", ")
        ))
        .unwrap();
    let mut cursor = rows.query([]).unwrap();
    while let Some(row) = cursor.next().unwrap() {
        let values: Vec<String> = (0..columns.len())
            .map(|i| render(row.get_ref(i).unwrap()))
            .collect();
        out += &format!("  row {}\n", values.join(" | "));
    }
    out
}

/// One SQLite value, typed: `NULL`, `1`, `1.5`, `'text'`, `x'00ff'`.
fn render(value: rusqlite::types::ValueRef<'_>) -> String {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => "NULL".to_string(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => format!("{f:?}"),
        ValueRef::Text(t) => format!("'{}'", String::from_utf8_lossy(t).replace('\'', "''")),
        ValueRef::Blob(b) => format!(
            "x'{}'",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        ),
    }
}

/// Runs every script of the example's blueprint (from version 1 up to its version) on `state`,
/// returning the log lines.
fn migrate(example: &Path, bp: &Blueprint, state: &Path) -> Vec<String> {
    let m = bp
        .migrations
        .as_ref()
        .unwrap_or_else(|| panic!("{}: no migrations in the blueprint", example.display()));
    let version = bp.metadata.version;
    let steps = steps_in(&example.join(&m.dir), 1, version).unwrap();
    assert!(!steps.is_empty(), "{}: no scripts", example.display());
    let input = RunInput {
        name: &bp.metadata.name,
        from: 1,
        to: version,
        steps: &steps,
        limits: &m.limits,
    };
    let lines = Mutex::new(Vec::new());
    let report = run(state, &input, &|l: &str| {
        lines.lock().unwrap().push(l.to_string())
    })
    .unwrap_or_else(|e| panic!("{}: {e}", example.display()));
    let ran: Vec<u32> = steps.iter().map(|s| s.version).collect();
    assert_eq!(report.ran, ran, "{}", example.display());
    lines.into_inner().unwrap()
}

/// Everything that differs between the migrated `state` and what the example expects.
fn differences(example: &Path, state: &Path) -> Vec<String> {
    let mut actual = read_tree(state);
    let mut out = Vec::new();
    if example.join("after.sql").exists() {
        if actual.remove(DB_FILE).is_none() {
            out.push(format!("missing: {DB_FILE}"));
        } else {
            let scratch = tempfile::tempdir().unwrap();
            let expected_db = scratch.path().join(DB_FILE);
            build_db(&example.join("after.sql"), &expected_db);
            let (want, got) = (
                canonical_dump(&expected_db),
                canonical_dump(&state.join(DB_FILE)),
            );
            if want != got {
                out.push(format!(
                    "differs: {DB_FILE}\n--- expected (after.sql)\n{want}--- actual\n{got}"
                ));
            }
        }
    }
    out.extend(tree_differences(
        &read_tree(&example.join("after")),
        &actual,
    ));
    out
}

/// Runs one example twice on a copy of its `before/` state; the panic names what differs.
fn check(example: &Path) {
    let name = example.file_name().unwrap().to_string_lossy();
    for dir in ["before", "after"] {
        assert!(
            example.join(dir).is_dir(),
            "{name}: no {dir}/ directory (every example has before/ and after/ state trees)"
        );
    }
    let bp = blueprint(example);
    let scratch = tempfile::tempdir().unwrap();
    let state = scratch.path().join("state");
    copy_fixture(&example.join("before"), &state);
    if example.join("before.sql").exists() {
        build_db(&example.join("before.sql"), &state.join(DB_FILE));
    }
    for run_no in ["first", "second"] {
        let log = migrate(example, &bp, &state);
        let diffs = differences(example, &state);
        assert!(
            diffs.is_empty(),
            "{name}, {run_no} run: the state differs from after/:\n{}\nlog:\n{}",
            diffs.join("\n"),
            log.join("\n")
        );
    }
}

#[test]
fn every_example_turns_before_into_after_byte_for_byte_and_again_changes_nothing() {
    let examples = examples();
    assert!(
        examples.len() >= 6,
        "expected the default-model example and at least five more, found {examples:?}"
    );
    // Every example runs, so that one failure does not hide another.
    let failures: Vec<String> = examples
        .iter()
        .filter_map(|example| panic_message(std::panic::catch_unwind(|| check(example))))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The message of a caught panic, `None` when there was none.
fn panic_message(outcome: std::thread::Result<()>) -> Option<String> {
    let payload = outcome.err()?;
    let text = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_string()));
    Some(text.unwrap_or_else(|| "(a panic without a message)".to_string()))
}

#[test]
fn an_example_without_after_fails() {
    let scratch = tempfile::tempdir().unwrap();
    let example = scratch.path().join("broken");
    copy_fixture(&examples_root().join("openclaw-default-model"), &example);
    fs::remove_dir_all(example.join("after")).unwrap();
    let text = panic_message(std::panic::catch_unwind(|| check(&example)))
        .expect("an example without after/ passed");
    assert!(text.contains("no after/ directory"), "{text}");
}

#[test]
fn a_wrong_after_file_fails_with_its_difference() {
    let scratch = tempfile::tempdir().unwrap();
    let example = scratch.path().join("wrong");
    copy_fixture(&examples_root().join("openclaw-default-model"), &example);
    let after = example.join("after/openclaw.json");
    let text = fs::read_to_string(&after).unwrap();
    fs::write(&after, text.trim_end()).unwrap();
    fs::write(example.join("after/extra.txt"), "not made by the script\n").unwrap();
    let text =
        panic_message(std::panic::catch_unwind(|| check(&example))).expect("a wrong after/ passed");
    assert!(text.contains("differs: openclaw.json"), "{text}");
    assert!(text.contains("missing: extra.txt"), "{text}");
}
