#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "tests"
)]

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt as _, PermissionsExt as _};
use std::path::Path;

use rusqlite::Connection;
use tempfile::TempDir;

use super::*;

/// Two empty trees, `before/` and `after/`, in one temporary directory.
struct Trees {
    _tmp: TempDir,
    before: PathBuf,
    after: PathBuf,
}

impl Trees {
    fn new() -> Self {
        let tmp = TempDir::new().unwrap();
        let (before, after) = (tmp.path().join("before"), tmp.path().join("after"));
        fs::create_dir(&before).unwrap();
        fs::create_dir(&after).unwrap();
        Self {
            _tmp: tmp,
            before,
            after,
        }
    }

    /// Writes `rel` with the same bytes on both sides.
    fn both(&self, rel: &str, bytes: impl AsRef<[u8]>) -> &Self {
        write(&self.before, rel, bytes.as_ref());
        write(&self.after, rel, bytes.as_ref());
        self
    }

    fn diff(&self) -> StateDiff {
        diff_trees(&self.before, &self.after).unwrap()
    }
}

fn write(root: &Path, rel: &str, bytes: impl AsRef<[u8]>) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, bytes).unwrap();
}

fn only_change(d: &StateDiff) -> &Changed {
    assert!(d.added.is_empty() && d.removed.is_empty(), "{d:?}");
    assert_eq!(d.changed.len(), 1, "{d:?}");
    &d.changed[0]
}

fn text_diff(c: &Changed) -> (TextFormat, &str, usize) {
    match &c.content {
        Content::Text {
            format,
            diff,
            omitted_lines,
            ..
        } => (*format, diff.as_str(), *omitted_lines),
        other => panic!("not a text diff: {other:?}"),
    }
}

#[test]
fn unchanged_tree_gives_an_empty_diff() {
    let t = Trees::new();
    t.both("a/b.json", "{}").both("c.txt", "same\n");
    fs::create_dir(t.before.join("empty")).unwrap();
    fs::create_dir(t.after.join("empty")).unwrap();
    let d = t.diff();
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(d.summary(), "0 added, 0 removed, 0 changed");
    assert_eq!(render(&d, "    "), "    no changes to state\n");
}

#[test]
fn added_removed_and_changed_are_listed_by_path() {
    let t = Trees::new();
    t.both("keep.txt", "x");
    write(&t.before, "gone.txt", "old");
    write(&t.before, "notes.txt", "one\ntwo\n");
    write(&t.after, "notes.txt", "one\nthree\n");
    write(&t.after, "new/b.txt", "12345");
    write(&t.after, "new/a.txt", "1");
    let d = t.diff();
    let paths = |v: &[Entry]| v.iter().map(|e| e.path.clone()).collect::<Vec<_>>();
    assert_eq!(paths(&d.added), ["new", "new/a.txt", "new/b.txt"]);
    assert_eq!(d.added[2].size, Some(5));
    assert_eq!(d.added[0].kind, EntryKind::Dir);
    assert_eq!(paths(&d.removed), ["gone.txt"]);
    assert_eq!(d.changed.len(), 1);
    let (format, diff, omitted) = text_diff(&d.changed[0]);
    assert_eq!(format, TextFormat::Text);
    assert_eq!(omitted, 0);
    assert!(
        diff.starts_with("--- before/notes.txt\n+++ after/notes.txt\n"),
        "{diff}"
    );
    assert!(diff.contains("-two\n+three\n"), "{diff}");
    assert_eq!(d.summary(), "3 added, 1 removed, 1 changed");

    let out = render(&d, "> ");
    assert!(out.lines().all(|l| l.starts_with("> ")), "{out}");
    let expected_order = [
        "state: 3 added, 1 removed, 1 changed",
        "- gone.txt (3 bytes)",
        "+ new/ (dir)",
        "+ new/a.txt (1 bytes)",
        "+ new/b.txt (5 bytes)",
        "~ notes.txt (text)",
        "--- before/notes.txt",
    ];
    let trimmed: Vec<&str> = out.lines().map(|l| l[2..].trim_start()).collect();
    assert_eq!(&trimmed[..expected_order.len()], expected_order, "{out}");
}

#[test]
fn type_mode_and_symlink_changes_are_noted_without_following_links() {
    let t = Trees::new();
    t.both("run.sh", "#!/bin/sh\n");
    fs::set_permissions(t.after.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(t.before.join("run.sh"), fs::Permissions::from_mode(0o644)).unwrap();
    write(&t.before, "x", "file");
    fs::create_dir(t.after.join("x")).unwrap();
    symlink("/etc", t.before.join("link")).unwrap();
    symlink("/etc/hostname", t.after.join("link")).unwrap();
    let d = t.diff();
    assert!(d.added.is_empty() && d.removed.is_empty(), "{d:?}");
    let [link, run, x] = &d.changed[..] else {
        panic!("{d:?}")
    };
    assert_eq!(
        link.content,
        Content::Symlink {
            target_before: "/etc".into(),
            target_after: "/etc/hostname".into()
        }
    );
    assert_eq!(run.content, Content::Same);
    let mode = run.mode.as_ref().unwrap();
    assert_eq!(
        (mode.before.as_str(), mode.after.as_str()),
        ("0644", "0755")
    );
    assert_eq!(x.content, Content::TypeChanged);
    assert_eq!(
        (x.kind_before, x.kind_after),
        (EntryKind::File, EntryKind::Dir)
    );

    let out = render(&d, "");
    assert!(
        out.contains("~ link (symlink /etc → /etc/hostname)"),
        "{out}"
    );
    assert!(out.contains("~ run.sh (mode 0644 → 0755)"), "{out}");
    assert!(out.contains("~ x (file → dir"), "{out}");
}

#[test]
fn an_owner_change_is_noted() {
    let t = Trees::new();
    t.both("memory.md", "tea\n");
    let meta = fs::metadata(t.before.join("memory.md")).unwrap();
    std::os::unix::fs::chown(t.after.join("memory.md"), Some(1000), Some(1000))
        .expect("changing a file's owner needs root (the suite runs as root)");
    let d = t.diff();
    let c = only_change(&d);
    assert_eq!(c.content, Content::Same);
    let owner = c.owner.as_ref().unwrap();
    assert_eq!(owner.before, format!("{}:{}", meta.uid(), meta.gid()));
    assert_eq!(owner.after, "1000:1000");
    let out = render(&d, "");
    assert!(
        out.contains(&format!("~ memory.md (owner {} → 1000:1000)", owner.before)),
        "{out}"
    );
}

#[test]
fn one_line_json_is_diffed_pretty_printed() {
    let t = Trees::new();
    write(
        &t.before,
        "s/1.json",
        r#"{"id":1,"model":"gpt-4","tags":["a","b"]}"#,
    );
    write(
        &t.after,
        "s/1.json",
        r#"{"id":1,"modelName":"gpt-4","tags":["a","b"]}"#,
    );
    let d = t.diff();
    let (format, diff, _) = text_diff(only_change(&d));
    assert_eq!(format, TextFormat::Json);
    assert!(diff.contains("\n-  \"model\": \"gpt-4\",\n"), "{diff}");
    assert!(diff.contains("\n+  \"modelName\": \"gpt-4\",\n"), "{diff}");
    assert!(
        diff.contains("\n   \"id\": 1,\n"),
        "unchanged keys are context: {diff}"
    );
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["changed"][0]["content"]["type"], "text");
    assert_eq!(json["changed"][0]["content"]["format"], "json");
    assert_eq!(json["changed"][0]["kindBefore"], "file");
}

#[test]
fn json_that_does_not_parse_is_diffed_as_text() {
    let t = Trees::new();
    write(&t.before, "c.json", "{\"a\": 1}\n");
    write(&t.after, "c.json", "{\"a\": \n");
    let d = t.diff();
    let (format, diff, _) = text_diff(only_change(&d));
    assert_eq!(format, TextFormat::Json);
    assert!(diff.contains("-{\"a\": 1}\n+{\"a\": \n"), "{diff}");
}

#[test]
fn json_rewritten_with_the_same_value_says_only_formatting_changed() {
    let t = Trees::new();
    write(&t.before, "c.json", r#"{"b":1,"a":[true]}"#);
    write(
        &t.after,
        "c.json",
        "{\n  \"a\": [\n    true\n  ],\n  \"b\": 1\n}\n",
    );
    let d = t.diff();
    let c = only_change(&d);
    assert!(
        matches!(
            c.content,
            Content::Text {
                same_value: true,
                ..
            }
        ),
        "{c:?}"
    );
    let (_, diff, _) = text_diff(c);
    assert!(
        diff.contains("-{\"b\":1,\"a\":[true]}\n"),
        "raw text diffed: {diff}"
    );
    let out = render(&d, "");
    assert!(
        out.contains("~ c.json (json, same value: only formatting changed)\n"),
        "{out}"
    );

    write(&t.after, "c.json", r#"{"b":2,"a":[true]}"#);
    let d = t.diff();
    assert!(
        matches!(
            only_change(&d).content,
            Content::Text {
                same_value: false,
                ..
            }
        ),
        "{d:?}"
    );
}

#[test]
fn yaml_and_toml_get_unified_diffs() {
    let t = Trees::new();
    write(&t.before, "config.yaml", "model: gpt-4\nport: 80\n");
    write(&t.after, "config.yaml", "model: gpt-5\nport: 80\n");
    write(&t.before, "agent.toml", "[agent]\nname = \"a\"\n");
    write(&t.after, "agent.toml", "[agent]\nname = \"b\"\n");
    let d = t.diff();
    let [toml, yaml] = &d.changed[..] else {
        panic!("{d:?}")
    };
    let (format, diff, _) = text_diff(yaml);
    assert_eq!(format, TextFormat::Yaml);
    assert!(
        diff.contains("-model: gpt-4\n+model: gpt-5\n port: 80\n"),
        "{diff}"
    );
    let (format, diff, _) = text_diff(toml);
    assert_eq!(format, TextFormat::Toml);
    assert!(
        diff.contains(" [agent]\n-name = \"a\"\n+name = \"b\"\n"),
        "{diff}"
    );
    let out = render(&d, "");
    assert!(out.contains("~ config.yaml (yaml)\n"), "{out}");
    assert!(out.contains("      -model: gpt-4\n"), "{out}");
}

#[test]
fn binary_and_huge_files_are_summarised_by_size() {
    let t = Trees::new();
    write(&t.before, "blob.bin", [0u8, 1, 2, 255]);
    write(&t.after, "blob.bin", [0u8, 1, 2, 255, 7]);
    let big = "line\n".repeat((MAX_DIFF_BYTES as usize) / 5 + 1);
    write(&t.before, "big.log", &big);
    write(&t.after, "big.log", big.replace("line", "LINE"));
    let d = t.diff();
    let [big_c, blob] = &d.changed[..] else {
        panic!("{d:?}")
    };
    let size = big.len() as u64;
    assert_eq!(
        big_c.content,
        Content::Large {
            size_before: size,
            size_after: size
        }
    );
    assert_eq!(
        blob.content,
        Content::Binary {
            size_before: 4,
            size_after: 5,
            note: None
        }
    );
    let out = render(&d, "");
    assert!(out.contains("~ blob.bin (binary, 4 → 5 bytes)"), "{out}");
    assert!(out.contains(&format!(
        "~ big.log (over 1 MiB, not diffed: {size} → {size} bytes)"
    )));
}

#[test]
fn long_diffs_are_truncated_and_say_so() {
    let t = Trees::new();
    let lines = |p: &str| (0..100).map(|i| format!("{p}{i}\n")).collect::<String>();
    write(&t.before, "mem.md", lines("old "));
    write(&t.after, "mem.md", lines("new "));
    let d = t.diff();
    let (_, diff, omitted) = text_diff(only_change(&d));
    assert_eq!(diff.lines().count(), 2 + MAX_DIFF_LINES);
    // 2 headers + 1 hunk header + 100 removed + 100 added lines in all.
    assert_eq!(omitted, 2 + 1 + 200 - (2 + MAX_DIFF_LINES));
    let out = render(&d, "");
    assert!(
        out.contains(&format!("... {omitted} more diff lines not shown\n")),
        "{out}"
    );
}

#[test]
fn at_most_twenty_files_are_shown_and_the_rest_counted() {
    let t = Trees::new();
    for i in 0..57 {
        write(
            &t.before,
            &format!("s/{i:02}.json"),
            format!("{{\"v\":{i}}}"),
        );
        write(
            &t.after,
            &format!("s/{i:02}.json"),
            format!("{{\"v\":{}}}", i + 1),
        );
    }
    let d = t.diff();
    assert_eq!(d.changed.len(), 57, "the JSON document lists every file");
    let out = render(&d, "");
    assert!(
        out.starts_with("state: 0 added, 0 removed, 57 changed\n"),
        "{out}"
    );
    assert_eq!(out.matches("\n  ~ s/").count(), MAX_FILES_SHOWN, "{out}");
    assert!(out.contains("~ s/19.json"), "{out}");
    assert!(!out.contains("~ s/20.json"), "{out}");
    assert!(out.ends_with("  ... and 37 more files changed\n"), "{out}");
}

fn sqlite_db(path: &Path, sql: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    Connection::open(path).unwrap().execute_batch(sql).unwrap();
}

const MEMORY: &str = "CREATE TABLE memories (id INTEGER PRIMARY KEY, text TEXT NOT NULL);
    INSERT INTO memories (text) VALUES ('likes tea'), ('lives in Lyon');";

fn sqlite_content(c: &Changed) -> (&str, &[TableRows]) {
    match &c.content {
        Content::Sqlite {
            schema_diff,
            tables,
            ..
        } => (schema_diff.as_str(), tables.as_slice()),
        other => panic!("not a sqlite diff: {other:?}"),
    }
}

#[test]
fn sqlite_column_added_and_backfilled_shows_the_schema_diff_and_same_counts() {
    let t = Trees::new();
    sqlite_db(&t.before.join("state.db"), MEMORY);
    sqlite_db(
        &t.after.join("state.db"),
        &format!(
            "{MEMORY} ALTER TABLE memories ADD COLUMN topic TEXT NOT NULL DEFAULT 'general';
             UPDATE memories SET topic = 'food' WHERE text LIKE '%tea%';"
        ),
    );
    let d = t.diff();
    let (schema, tables) = sqlite_content(only_change(&d));
    assert!(
        schema.starts_with("--- before/state.db\n+++ after/state.db\n"),
        "{schema}"
    );
    assert!(
        schema.contains("\n-CREATE TABLE memories (id INTEGER PRIMARY KEY, text TEXT NOT NULL);\n")
    );
    assert!(
        schema.contains("topic TEXT NOT NULL DEFAULT 'general'"),
        "{schema}"
    );
    assert_eq!(
        tables,
        [TableRows {
            name: "memories".into(),
            before: Some(2),
            after: Some(2)
        }]
    );
    let out = render(&d, "");
    assert!(out.contains("~ state.db (sqlite)\n"), "{out}");
    assert!(
        out.contains("      table memories: 2 rows (unchanged)\n"),
        "{out}"
    );
}

#[test]
fn sqlite_insert_shows_the_row_count_change() {
    let t = Trees::new();
    sqlite_db(&t.before.join("db/state.db"), MEMORY);
    sqlite_db(
        &t.after.join("db/state.db"),
        &format!("{MEMORY} INSERT INTO memories (text) VALUES ('has a cat');"),
    );
    let d = t.diff();
    let (schema, tables) = sqlite_content(only_change(&d));
    assert_eq!(schema, "");
    assert_eq!((tables[0].before, tables[0].after), (Some(2), Some(3)));
    let out = render(&d, "");
    assert!(out.contains("      schema unchanged\n"), "{out}");
    assert!(out.contains("      table memories: 2 → 3 rows\n"), "{out}");
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["changed"][0]["content"]["type"], "sqlite");
    assert_eq!(json["changed"][0]["content"]["tables"][0]["after"], 3);
}

#[test]
fn sqlite_update_only_says_the_data_differs() {
    let t = Trees::new();
    sqlite_db(&t.before.join("state.db"), MEMORY);
    sqlite_db(
        &t.after.join("state.db"),
        &format!("{MEMORY} UPDATE memories SET text = 'likes coffee' WHERE id = 1;"),
    );
    let out = render(&t.diff(), "");
    assert!(out.contains("      schema unchanged\n"), "{out}");
    assert!(
        out.contains("      table memories: 2 rows (unchanged)\n"),
        "{out}"
    );
    assert!(
        out.contains("      row counts unchanged; the data differs\n"),
        "{out}"
    );
}

#[test]
fn many_tables_are_truncated_and_say_so() {
    let t = Trees::new();
    let tables: String = (0..45)
        .map(|i| format!("CREATE TABLE t{i:02} (x); INSERT INTO t{i:02} VALUES (1);"))
        .collect();
    let tables = format!("BEGIN; {tables} COMMIT;");
    sqlite_db(&t.before.join("state.db"), &tables);
    sqlite_db(
        &t.after.join("state.db"),
        &format!("{tables} DELETE FROM t44;"),
    );
    let d = t.diff();
    let (_, rows) = sqlite_content(only_change(&d));
    assert_eq!(rows.len(), 45, "the JSON document lists every table");
    let out = render(&d, "");
    assert_eq!(
        out.matches("      table t").count(),
        MAX_DIFF_LINES,
        "{out}"
    );
    assert!(out.contains("      ... and 5 more tables\n"), "{out}");
    assert!(!out.contains("the data differs"), "a count changed: {out}");
}

/// Every file directly in `root`: its name and a hash of its bytes.
fn listing(root: &Path) -> Vec<(std::ffi::OsString, u64)> {
    use std::hash::{Hash as _, Hasher as _};
    let mut v: Vec<_> = fs::read_dir(root)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            fs::read(e.path()).unwrap().hash(&mut h);
            (e.file_name(), h.finish())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn wal_databases_are_read_without_touching_the_trees() {
    let t = Trees::new();
    sqlite_db(&t.before.join("state.db"), "PRAGMA journal_mode=WAL;");
    sqlite_db(&t.before.join("state.db"), MEMORY);
    sqlite_db(&t.after.join("state.db"), "PRAGMA journal_mode=WAL;");
    sqlite_db(
        &t.after.join("state.db"),
        &format!("{MEMORY} DELETE FROM memories;"),
    );
    let (before, after) = (listing(&t.before), listing(&t.after));
    assert_eq!(before.len(), 1, "only state.db, no -wal or -shm yet");
    let d = t.diff();
    let (_, tables) = sqlite_content(only_change(&d));
    assert_eq!((tables[0].before, tables[0].after), (Some(2), Some(0)));
    assert!(listing(&t.before) == before, "before/ was modified");
    assert!(listing(&t.after) == after, "after/ was modified");
}

#[test]
fn rows_still_in_the_write_ahead_log_are_counted() {
    let t = Trees::new();
    sqlite_db(&t.before.join("state.db"), MEMORY);
    // A copy of a live database: the last transaction is only in state.db-wal.
    let live = t.before.join("live");
    fs::create_dir(&live).unwrap();
    let db = Connection::open(live.join("state.db")).unwrap();
    db.execute_batch("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;")
        .unwrap();
    db.execute_batch(MEMORY).unwrap();
    db.execute_batch("INSERT INTO memories (text) VALUES ('has a cat');")
        .unwrap();
    assert!(live.join("state.db-wal").metadata().unwrap().len() > 0);
    fs::copy(live.join("state.db"), t.after.join("state.db")).unwrap();
    fs::copy(live.join("state.db-wal"), t.after.join("state.db-wal")).unwrap();
    drop(db);
    fs::remove_dir_all(&live).unwrap();
    let d = t.diff();
    assert_eq!(d.added.len(), 1, "state.db-wal: {d:?}");
    let (schema, tables) = sqlite_content(&d.changed[0]);
    assert_eq!(schema, "");
    assert_eq!((tables[0].before, tables[0].after), (Some(2), Some(3)));
}

#[test]
fn an_unreadable_database_is_a_binary_change_with_a_note() {
    let t = Trees::new();
    sqlite_db(&t.before.join("state.db"), MEMORY);
    let mut broken = fs::read(t.before.join("state.db")).unwrap();
    broken[100..200].fill(0xff);
    write(&t.after, "state.db", &broken);
    let d = t.diff();
    match &only_change(&d).content {
        Content::Binary { note: Some(n), .. } => assert!(n.contains("SQLite"), "{n}"),
        other => panic!("{other:?}"),
    }
}
