//! The `state` object a migration script sees, and the `db` methods: every method is a thin
//! wrapper over [`StateRoot`] (confinement) and [`values`](super::values) (formats). A failure
//! becomes a Rhai runtime error whose message names the state path; the path is also kept so
//! the engine can report it in [`ScriptError::Failed`](super::engine::ScriptError).

use std::sync::{Arc, Mutex};

use rhai::{Array, Dynamic, Engine, EvalAltResult, FnPtr, NativeCallContext, Position, INT};

use super::confine::{ConfineError, StateRoot};
use super::sqlite::{Db, SqlError};
use super::values::{self, ValueError};

type Res<T> = Result<T, Box<EvalAltResult>>;

/// The confined state of one script run. Clones share it.
#[derive(Clone)]
pub struct State {
    inner: Arc<Inner>,
}

struct Inner {
    root: Arc<StateRoot>,
    /// Largest file read, in bytes (the string size limit).
    max_read: u64,
    /// Most rows or records returned (the array size limit).
    max_items: usize,
    dbs: Mutex<Vec<Db>>,
    failures: Failures,
}

/// The message and state path of the last failure a state or db method raised, so the engine
/// can report which state path a failed script was working on. Clones share it.
#[derive(Clone, Default)]
pub struct Failures(Arc<Mutex<Option<(String, String)>>>);

impl Failures {
    /// A Rhai error with `message`, remembered as being about `path`.
    pub fn raise(&self, path: &str, message: String) -> Box<EvalAltResult> {
        *crate::sync::lock(&self.0) = Some((message.clone(), path.to_string()));
        EvalAltResult::ErrorRuntime(message.into(), Position::NONE).into()
    }

    /// The state path of the failure that produced `message`, if a state method raised it.
    pub fn path_of(&self, message: &str) -> Option<String> {
        crate::sync::lock(&self.0)
            .as_ref()
            .filter(|(m, _)| m == message)
            .map(|(_, p)| p.clone())
    }
}

impl State {
    pub fn new(root: Arc<StateRoot>, max_read: u64, max_items: usize) -> State {
        State {
            inner: Arc::new(Inner {
                root,
                max_read,
                max_items,
                dbs: Mutex::default(),
                failures: Failures::default(),
            }),
        }
    }

    /// The state path of the failure that produced `message`, if a state method raised it.
    pub fn path_of_failure(&self, message: &str) -> Option<String> {
        self.inner.failures.path_of(message)
    }

    /// Commits (`true`) or rolls back every database the script opened.
    pub fn finish(&self, commit: bool) -> Result<(), SqlError> {
        let dbs = std::mem::take(&mut *crate::sync::lock(&self.inner.dbs));
        let mut first_err = None;
        for db in dbs {
            if let Err(e) = db.finish(commit) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// A Rhai error for a failure about `path`, remembered for [`Self::path_of_failure`].
    fn fail(&self, path: &str, message: String) -> Box<EvalAltResult> {
        self.inner.failures.raise(path, message)
    }

    fn confine(&self, e: ConfineError) -> Box<EvalAltResult> {
        let message = match &e {
            ConfineError::TooLarge { .. } => {
                format!("{e} (the string size limit: raise migrations.limits.stringSize)")
            }
            _ => crate::error_chain(&e),
        };
        let path = e.state_path().unwrap_or_default().to_string();
        self.fail(&path, message)
    }

    fn value(&self, path: &str, e: ValueError) -> Box<EvalAltResult> {
        self.fail(path, format!("state path `{path}`: {e}"))
    }

    fn root(&self) -> &StateRoot {
        &self.inner.root
    }

    pub fn read_text(&self, p: &str) -> Res<String> {
        let bytes = self
            .root()
            .read(p, self.inner.max_read)
            .map_err(|e| self.confine(e))?;
        values::text(bytes).map_err(|e| self.value(p, e))
    }

    pub fn write_text(&self, p: &str, s: &str) -> Res<()> {
        self.root()
            .write(p, s.as_bytes())
            .map_err(|e| self.confine(e))
    }

    pub fn append_text(&self, p: &str, s: &str) -> Res<()> {
        self.root()
            .append(p, s.as_bytes())
            .map_err(|e| self.confine(e))
    }

    /// Reads `p` as text, parses it with `parse` and converts it to a Rhai value.
    fn read_doc(&self, p: &str, parse: fn(&str) -> Result<Dynamic, ValueError>) -> Res<Dynamic> {
        let text = self.read_text(p)?;
        parse(&text).map_err(|e| self.value(p, e))
    }

    /// Converts `v`, renders it with `render` and writes it to `p` atomically.
    fn write_doc(
        &self,
        p: &str,
        v: &Dynamic,
        render: fn(&Dynamic) -> Result<String, ValueError>,
    ) -> Res<()> {
        let text = render(v).map_err(|e| self.value(p, e))?;
        self.write_text(p, &text)
    }

    pub fn read_jsonl(&self, p: &str) -> Res<Array> {
        let text = self.read_text(p)?;
        values::parse_jsonl(&text).map_err(|e| self.value(p, e))
    }

    pub fn write_jsonl(&self, p: &str, records: &Array) -> Res<()> {
        let mut out = String::new();
        for r in records {
            out += &values::json_line(r).map_err(|e| self.value(p, e))?;
        }
        self.write_text(p, &out)
    }

    pub fn append_jsonl(&self, p: &str, record: &Dynamic) -> Res<()> {
        let line = values::json_line(record).map_err(|e| self.value(p, e))?;
        self.append_text(p, &line)
    }

    /// Rewrites a JSONL file record by record: `f` returns the new record, or `()` to drop it.
    pub fn rewrite_jsonl(&self, ctx: &NativeCallContext, p: &str, f: &FnPtr) -> Res<INT> {
        let text = self.read_text(p)?;
        let records = values::parse_jsonl(&text).map_err(|e| self.value(p, e))?;
        let mut out = String::new();
        let mut written: INT = 0;
        for rec in records {
            let new: Dynamic = f.call_within_context(ctx, (rec,))?;
            if new.is_unit() {
                continue;
            }
            out += &values::json_line(&new).map_err(|e| self.value(p, e))?;
            written += 1;
            if out.len() as u64 > self.inner.max_read {
                let e = ConfineError::TooLarge {
                    path: p.to_string(),
                    size: out.len() as u64,
                    limit: self.inner.max_read,
                };
                return Err(self.confine(e));
            }
        }
        self.write_text(p, &out)?;
        Ok(written)
    }

    pub fn list(&self, glob: &str) -> Res<Array> {
        let found = self.root().list(glob).map_err(|e| self.confine(e))?;
        if found.len() > self.inner.max_items {
            let message = format!("glob `{glob}` matches {} paths, over the array size limit of {} (raise migrations.limits.arraySize)", found.len(), self.inner.max_items);
            return Err(self.fail(glob, message));
        }
        Ok(found.into_iter().map(Dynamic::from).collect())
    }

    /// The database at `p` in this script's transaction (one connection per database, whatever
    /// name it is opened by).
    pub fn sqlite(&self, p: &str) -> Res<Db> {
        let file = self.root().sqlite_file(p).map_err(|e| self.confine(e))?;
        let mut dbs = crate::sync::lock(&self.inner.dbs);
        if let Some(open) = dbs.iter().find(|d| d.key() == file.key()) {
            return Ok(open.clone());
        }
        let failures = self.inner.failures.clone();
        let db = Db::open(file, self.inner.max_items, failures).map_err(|e| self.confine(e))?;
        dbs.push(db.clone());
        Ok(db)
    }
}

/// Registers the `state` and `db` types and their methods on `engine`.
pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<State>("State");
    engine.register_type_with_name::<Db>("Db");
    register_files(engine);
    register_formats(engine);
    register_tree(engine);
    register_db(engine);
}

fn register_files(engine: &mut Engine) {
    engine.register_fn("read_text", |s: &mut State, p: &str| s.read_text(p));
    engine.register_fn("write_text", |s: &mut State, p: &str, t: &str| {
        s.write_text(p, t)
    });
    engine.register_fn("append_text", |s: &mut State, p: &str, t: &str| {
        s.append_text(p, t)
    });
    engine.register_fn("read_jsonl", |s: &mut State, p: &str| s.read_jsonl(p));
    engine.register_fn("write_jsonl", |s: &mut State, p: &str, a: Array| {
        s.write_jsonl(p, &a)
    });
    engine.register_fn("append_jsonl", |s: &mut State, p: &str, v: Dynamic| {
        s.append_jsonl(p, &v)
    });
    engine.register_fn(
        "rewrite_jsonl",
        |ctx: NativeCallContext, s: &mut State, p: &str, f: FnPtr| s.rewrite_jsonl(&ctx, p, &f),
    );
}

fn register_formats(engine: &mut Engine) {
    engine.register_fn("read_json", |s: &mut State, p: &str| {
        s.read_doc(p, values::parse_json)
    });
    engine.register_fn("write_json", |s: &mut State, p: &str, v: Dynamic| {
        s.write_doc(p, &v, values::json_pretty)
    });
    engine.register_fn("read_yaml", |s: &mut State, p: &str| {
        s.read_doc(p, values::parse_yaml)
    });
    engine.register_fn("write_yaml", |s: &mut State, p: &str, v: Dynamic| {
        s.write_doc(p, &v, values::yaml)
    });
    engine.register_fn("read_toml", |s: &mut State, p: &str| {
        s.read_doc(p, values::parse_toml)
    });
    engine.register_fn("write_toml", |s: &mut State, p: &str, v: Dynamic| {
        s.write_doc(p, &v, values::toml_text)
    });
}

fn register_tree(engine: &mut Engine) {
    engine.register_fn("exists", |s: &mut State, p: &str| {
        s.root().exists(p).map_err(|e| s.confine(e))
    });
    engine.register_fn("is_dir", |s: &mut State, p: &str| {
        s.root().is_dir(p).map_err(|e| s.confine(e))
    });
    engine.register_fn("list", |s: &mut State, glob: &str| s.list(glob));
    engine.register_fn("rename", |s: &mut State, from: &str, to: &str| {
        s.root().rename(from, to).map_err(|e| s.confine(e))
    });
    engine.register_fn("copy", |s: &mut State, from: &str, to: &str| {
        s.root().copy(from, to).map_err(|e| s.confine(e))
    });
    engine.register_fn("remove", |s: &mut State, p: &str| {
        s.root().remove(p).map_err(|e| s.confine(e))
    });
    engine.register_fn("mkdir", |s: &mut State, p: &str| {
        s.root().mkdir(p).map_err(|e| s.confine(e))
    });
    engine.register_fn("sqlite", |s: &mut State, p: &str| s.sqlite(p));
}

fn register_db(engine: &mut Engine) {
    engine.register_fn("execute", |d: &mut Db, sql: &str| {
        d.execute(sql, &[]).map_err(|e| d.raise(&e))
    });
    engine.register_fn("execute", |d: &mut Db, sql: &str, p: Array| {
        d.execute(sql, &p).map_err(|e| d.raise(&e))
    });
    engine.register_fn("execute_batch", |d: &mut Db, sql: &str| {
        d.execute_batch(sql).map_err(|e| d.raise(&e))
    });
    engine.register_fn("query", |d: &mut Db, sql: &str| {
        d.query(sql, &[]).map_err(|e| d.raise(&e))
    });
    engine.register_fn("query", |d: &mut Db, sql: &str, p: Array| {
        d.query(sql, &p).map_err(|e| d.raise(&e))
    });
}
