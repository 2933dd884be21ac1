use std::fs;
use std::sync::Mutex;

use super::*;
use crate::blueprint::quantity::Dur;

struct Run {
    _tmp: tempfile::TempDir,
    state: PathBuf,
    result: Result<RunReport, ScriptError>,
    log: Vec<String>,
}

/// Runs `script` as `v2.rhai` (1 → 2) on a state dir prepared by `prepare`.
fn run_script(script: &str, limits: ScriptLimits, prepare: impl FnOnce(&Path)) -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let scripts = tmp.path().join("migrations");
    fs::create_dir_all(&state).unwrap();
    fs::create_dir_all(&scripts).unwrap();
    fs::write(scripts.join("v2.rhai"), script).unwrap();
    prepare(&state);
    let steps = steps_in(&scripts, 1, 2).unwrap();
    let input = RunInput {
        name: "demo",
        from: 1,
        to: 2,
        steps: &steps,
        limits: &limits,
    };
    let log = Mutex::new(Vec::new());
    let result = run(&state, &input, &|l| log.lock().unwrap().push(l.to_string()));
    Run {
        _tmp: tmp,
        state,
        result,
        log: log.into_inner().unwrap(),
    }
}

fn failure(r: &Run) -> (usize, usize, String, Option<String>) {
    match &r.result {
        Err(ScriptError::Failed {
            line,
            column,
            message,
            state_path,
            ..
        }) => (*line, *column, message.clone(), state_path.clone()),
        other => panic!("expected a script failure, got {other:?}"),
    }
}

#[test]
fn steps_in_lists_existing_scripts_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    for n in [2, 4, 9] {
        fs::write(tmp.path().join(format!("v{n}.rhai")), "").unwrap();
    }
    let steps = steps_in(tmp.path(), 1, 5).unwrap();
    assert_eq!(steps.iter().map(|s| s.version).collect::<Vec<_>>(), [2, 4]);
    assert!(steps_in(&tmp.path().join("nope"), 1, 2).is_err());
}

#[test]
fn reads_and_writes_json_pretty_with_scope_and_log() {
    let r = run_script(
        "let c = state.read_json(\"cfg.json\");\nc.model = `${name}:${from}->${to}@${step}`;\nstate.write_json(\"cfg.json\", c);\nprint(\"done\"); log(42);\ndebug(\"d\");",
        ScriptLimits::default(),
        |s| fs::write(s.join("cfg.json"), r#"{"z": [1, 2.5], "model": "old"}"#).unwrap(),
    );
    assert_eq!(r.result.as_ref().unwrap().ran, [2]);
    assert_eq!(
        fs::read_to_string(r.state.join("cfg.json")).unwrap(),
        "{\n  \"model\": \"demo:1->2@2\",\n  \"z\": [\n    1,\n    2.5\n  ]\n}\n"
    );
    assert_eq!(
        r.log,
        ["v2.rhai:4: done", "v2.rhai:4: 42", "v2.rhai:5: \"d\""]
    );
}

#[test]
fn a_script_error_reports_line_column_and_state_path() {
    let r = run_script(
        "let x = 1;\n  let y = state.read_json(\"../etc/passwd\");",
        ScriptLimits::default(),
        |_| {},
    );
    let (line, column, message, path) = failure(&r);
    assert_eq!((line, column), (2, 17), "{message}");
    assert!(message.contains("`../etc/passwd`"), "{message}");
    assert_eq!(path.as_deref(), Some("../etc/passwd"));
    let shown = r.result.unwrap_err().to_string();
    assert!(
        shown.ends_with("v2.rhai:2:17: ".to_string().as_str()) || shown.contains("v2.rhai:2:17: "),
        "{shown}"
    );

    let r = run_script(
        "let a = 1;\nlet b = a.nope();",
        ScriptLimits::default(),
        |_| {},
    );
    assert_eq!(failure(&r).0, 2);
    let r = run_script("let a = ;", ScriptLimits::default(), |_| {});
    assert!(failure(&r).2.starts_with("does not compile"));
}

#[test]
fn eval_and_import_are_disabled() {
    for src in ["eval(\"1\")", "import \"x\" as x;"] {
        let r = run_script(src, ScriptLimits::default(), |_| {});
        assert!(r.result.is_err(), "{src}");
    }
}

fn limited(f: impl FnOnce(&mut ScriptLimits)) -> ScriptLimits {
    let mut l = ScriptLimits::default();
    f(&mut l);
    l
}

#[test]
fn an_infinite_loop_is_stopped_by_operations() {
    let r = run_script("loop {}", limited(|l| l.operations = Some(10_000)), |_| {});
    assert!(
        failure(&r).2.contains("raise migrations.limits.operations"),
        "{:?}",
        failure(&r)
    );
}

#[test]
fn an_infinite_loop_is_stopped_by_wall_time() {
    let limits = limited(|l| {
        l.operations = Some(u64::MAX / 2);
        l.wall_time = Some(Dur(Duration::from_millis(200)));
    });
    let started = Instant::now();
    let r = run_script("let i = 0; loop { i += 1; }", limits, |_| {});
    assert!(
        failure(&r).2.contains("raise migrations.limits.wallTime"),
        "{:?}",
        failure(&r)
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn unbounded_allocation_is_stopped_by_size_limits() {
    let cases = [
        ("let s = \"x\"; loop { s += s; }", "stringSize"),
        ("let a = []; loop { a.push(1); }", "arraySize"),
        (
            "let m = #{}; let i = 0; loop { m = #{inner: m, i: i}; i += 1; }",
            "mapSize",
        ),
        ("fn f(x) { f(x + 1) } f(0);", "callDepth"),
    ];
    for (src, field) in cases {
        let limits = limited(|l| {
            l.string_size = Some(1 << 16);
            l.array_size = Some(1000);
            l.map_size = Some(1000);
        });
        let r = run_script(src, limits, |_| {});
        let msg = failure(&r).2;
        assert!(
            msg.contains(&format!("raise migrations.limits.{field}")),
            "{src}: {msg}"
        );
    }
}

#[test]
fn a_file_over_the_string_limit_is_refused() {
    let limits = limited(|l| l.string_size = Some(100));
    let r = run_script("state.read_text(\"big\")", limits, |s| {
        fs::write(s.join("big"), [b'x'; 500]).unwrap()
    });
    let msg = failure(&r).2;
    assert!(
        msg.contains("migrations.limits.stringSize") && msg.contains("`big`"),
        "{msg}"
    );
}

const SCHEMA: &str = "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('a');";

fn notes(state: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open(state.join("state.db")).unwrap();
    let mut s = c.prepare("SELECT body FROM notes ORDER BY id").unwrap();
    s.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn sqlite_changes_roll_back_when_the_script_fails() {
    let r = run_script(
        "let db = state.sqlite(\"state.db\");\ndb.execute(\"INSERT INTO notes (body) VALUES (?)\", [\"b\"]);\ndb.execute_batch(\"ALTER TABLE notes ADD COLUMN topic TEXT\");\nthrow \"boom\";",
        ScriptLimits::default(),
        |s| rusqlite::Connection::open(s.join("state.db")).unwrap().execute_batch(SCHEMA).unwrap(),
    );
    assert_eq!(failure(&r).2, "boom");
    assert_eq!(notes(&r.state), ["a"]);
    let c = rusqlite::Connection::open(r.state.join("state.db")).unwrap();
    assert!(c.prepare("SELECT topic FROM notes").is_err());
}

#[test]
fn sqlite_changes_commit_when_the_script_succeeds() {
    let r = run_script(
        r#"let db = state.sqlite("state.db");
db.execute_batch("ALTER TABLE notes ADD COLUMN topic TEXT DEFAULT 'general'");
let n = db.execute("INSERT INTO notes (body, topic) VALUES (?, ?)", ["b", ()]);
let rows = state.sqlite("./state.db").query("SELECT id, body, topic FROM notes WHERE id >= ?", [1]);
state.write_json("rows.json", #{n: n, rows: rows});
let fresh = state.sqlite("new/fresh.db");
fresh.execute("CREATE TABLE t (x BLOB, y REAL)");
"#,
        ScriptLimits::default(),
        |s| {
            rusqlite::Connection::open(s.join("state.db"))
                .unwrap()
                .execute_batch(SCHEMA)
                .unwrap()
        },
    );
    r.result.as_ref().unwrap();
    assert_eq!(notes(&r.state), ["a", "b"]);
    let rows: serde_json::Value =
        serde_json::from_slice(&fs::read(r.state.join("rows.json")).unwrap()).unwrap();
    assert_eq!(rows["n"], 1);
    assert_eq!(
        rows["rows"][0],
        serde_json::json!({"id": 1, "body": "a", "topic": "general"})
    );
    assert_eq!(rows["rows"][1]["topic"], serde_json::Value::Null);
    assert!(r.state.join("new/fresh.db").is_file());
}

#[test]
fn sqlite_cannot_attach_another_file_or_end_the_transaction() {
    for sql in [
        "ATTACH '/tmp/nemoclaw-h1-attach.db' AS x",
        "VACUUM INTO '/tmp/nemoclaw-h1-vacuum.db'",
        "COMMIT",
    ] {
        let r = run_script(
            &format!("state.sqlite(\"s.db\").execute_batch(\"{sql}\")"),
            ScriptLimits::default(),
            |_| {},
        );
        let (_, _, msg, path) = failure(&r);
        assert_eq!(path.as_deref(), Some("s.db"), "{sql}: {msg}");
    }
    assert!(!Path::new("/tmp/nemoclaw-h1-attach.db").exists());
    assert!(!Path::new("/tmp/nemoclaw-h1-vacuum.db").exists());
}

#[test]
fn rewrite_jsonl_drops_and_rewrites_lines() {
    let r = run_script(
        r#"let n = state.rewrite_jsonl("t.jsonl", |rec| if rec.role == "system" { () } else { #{who: rec.role, text: rec.content} });
state.append_jsonl("t.jsonl", #{who: "n", text: `${n}`});
let all = state.read_jsonl("t.jsonl");
state.write_jsonl("copy.jsonl", all);
"#,
        ScriptLimits::default(),
        |s| {
            fs::write(
                s.join("t.jsonl"),
                "{\"role\":\"system\",\"content\":\"x\"}\n\n{\"role\":\"user\",\"content\":\"hi\"}\n{\"role\":\"bot\",\"content\":\"yo\"}\n",
            )
            .unwrap()
        },
    );
    r.result.as_ref().unwrap();
    let want = "{\"text\":\"hi\",\"who\":\"user\"}\n{\"text\":\"yo\",\"who\":\"bot\"}\n{\"text\":\"2\",\"who\":\"n\"}\n";
    assert_eq!(fs::read_to_string(r.state.join("t.jsonl")).unwrap(), want);
    assert_eq!(
        fs::read_to_string(r.state.join("copy.jsonl")).unwrap(),
        want
    );
}

#[test]
fn yaml_toml_text_and_tree_methods() {
    let r = run_script(
        r#"let y = state.read_yaml("c.yaml"); y.b = 2; state.write_yaml("c.yaml", y);
let t = state.read_toml("c.toml"); t.server.port = 9; state.write_toml("c.toml", t);
state.write_text("notes/a.md", "A"); state.append_text("notes/a.md", "B");
state.mkdir("empty/dir");
state.copy("notes", "notes2"); state.rename("notes2/a.md", "moved.md");
let gone = state.remove("notes"); let again = state.remove("notes");
state.write_json("out.json", #{gone: gone, again: again, list: state.list("**/*.md"),
    e: state.exists("moved.md"), d: state.is_dir("empty"), text: state.read_text("moved.md")});
"#,
        ScriptLimits::default(),
        |s| {
            fs::write(s.join("c.yaml"), "a: 1\n").unwrap();
            fs::write(s.join("c.toml"), "[server]\nport = 8\n").unwrap();
        },
    );
    r.result.as_ref().unwrap();
    let out: serde_json::Value =
        serde_json::from_slice(&fs::read(r.state.join("out.json")).unwrap()).unwrap();
    assert_eq!(
        out,
        serde_json::json!({"gone": true, "again": false, "list": ["moved.md"], "e": true, "d": true, "text": "AB"})
    );
    assert_eq!(
        fs::read_to_string(r.state.join("c.toml")).unwrap(),
        "[server]\nport = 9\n"
    );
    let y = fs::read_to_string(r.state.join("c.yaml")).unwrap();
    assert!(y.contains("a: 1") && y.contains("b: 2"), "{y}");
}

#[test]
fn the_openclaw_example_migrates_its_config() {
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations-examples/openclaw-default-model");
    let script = fs::read_to_string(example.join("migrations/v2.rhai")).unwrap();
    let r = run_script(&script, ScriptLimits::default(), |s| {
        fs::copy(
            example.join("before/openclaw.json"),
            s.join("openclaw.json"),
        )
        .unwrap();
    });
    r.result.as_ref().unwrap();
    let read =
        |p: &Path| serde_json::from_slice::<serde_json::Value>(&fs::read(p).unwrap()).unwrap();
    assert_eq!(
        read(&r.state.join("openclaw.json")),
        read(&example.join("after/openclaw.json"))
    );
    assert_eq!(
        r.log,
        ["v2.rhai:8: default model mock/mock-1 -> gateway/nvidia/meta/llama-3.3-70b-instruct"]
    );
}
