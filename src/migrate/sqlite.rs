//! The `db` object scripts get from `state.sqlite(path)`: a SQLite database beneath the state
//! dir, opened without following symlinks, in one transaction that the engine commits when the
//! script succeeds and rolls back when it fails.
//!
//! SQLite opens files by name, so the database's directory is resolved beneath the state dir
//! first (openat2), the file and its `-wal`, `-shm` and `-journal` siblings are checked (absent,
//! or regular with one link), and SQLite gets the directory's real path as the kernel names its
//! open fd, with `SQLITE_OPEN_NOFOLLOW` (no symlink anywhere on the path). After opening, the
//! path must still name the inode that was checked. `ATTACH` (and so `VACUUM INTO`) is off
//! and an authorizer denies `ATTACH`, `DETACH`, `BEGIN`, `COMMIT` and `ROLLBACK`: a script
//! cannot reach another file through SQL nor end the transaction nemoclaw holds.

use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};

use nix::fcntl::OFlag;
use rhai::{Array, Blob, Dynamic, ImmutableString, Map};
use rusqlite::config::DbConfig;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags};

use super::api::Failures;
use super::confine::{
    check_regular, checked, fd_path, io_err, lstat_at, refused, ConfineError, StateRoot,
};

/// Why a statement failed. Every variant names the database's state path.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("state path `{path}`: SQLite")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state path `{path}`: parameter {index} is a {kind}: use int, float, string, bool, () or blob")]
    Param {
        path: String,
        index: usize,
        kind: String,
    },
    #[error("state path `{path}`: the query returns more than {limit} rows (raise migrations.limits.arraySize)")]
    TooManyRows { path: String, limit: usize },
    #[error("state path `{path}`: the migration's transaction ended: nemoclaw commits or rolls back each database, so a script must not use BEGIN, COMMIT or ROLLBACK")]
    TransactionEnded { path: String },
}

/// An open database in its script's transaction. Clones share the connection.
#[derive(Clone)]
pub struct Db {
    inner: Arc<DbInner>,
}

struct DbInner {
    conn: Mutex<Connection>,
    path: String,
    /// Device and inode: two `state.sqlite` calls on one database share one connection.
    key: (u64, u64),
    max_rows: usize,
    failures: Failures,
    /// The database's directory, kept open as long as the connection.
    _dir: OwnedFd,
}

/// A database file beneath the state dir, checked (with its journal siblings) and created if
/// missing; [`SqliteFile::connect`] opens it.
pub struct SqliteFile {
    dir: OwnedFd,
    base: String,
    path: String,
    st: nix::sys::stat::FileStat,
}

impl StateRoot {
    /// Checks (and creates if missing) the SQLite database at `path`, confined as the module
    /// doc says.
    pub fn sqlite_file(&self, path: &str) -> Result<SqliteFile, ConfineError> {
        let (dir, base) = self.parent_of(&checked(path)?.join("/"), path, true)?;
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let shown = format!("{path}{suffix}");
            if let Some(st) = lstat_at(&dir, &format!("{base}{suffix}"), &shown)? {
                check_regular(&shown, &st)?;
            }
        }
        if lstat_at(&dir, &base, path)?.is_none() {
            self.create_new(&dir, &base, path, OFlag::O_WRONLY | OFlag::O_CLOEXEC)?;
        }
        let st = lstat_at(&dir, &base, path)?.ok_or_else(|| refused(path, "it vanished"))?;
        Ok(SqliteFile {
            dir,
            base,
            path: path.to_string(),
            st,
        })
    }

    /// Opens the SQLite database at `path` (see [`Self::sqlite_file`]).
    pub fn open_sqlite(&self, path: &str) -> Result<(Connection, OwnedFd), ConfineError> {
        self.sqlite_file(path)?.connect()
    }
}

impl SqliteFile {
    /// The file's device and inode: two names of one database share one connection.
    pub fn key(&self) -> (u64, u64) {
        (self.st.st_dev, self.st.st_ino)
    }

    /// Connects through the directory's real path without following symlinks, checks the path
    /// still names the checked file, and turns `ATTACH` off. Returns the directory's fd with the
    /// connection: keep it as long as the connection.
    pub fn connect(self) -> Result<(Connection, OwnedFd), ConfineError> {
        let path = self.path.as_str();
        let real = fd_path(&self.dir)
            .map_err(|e| io_err(path, e))?
            .join(&self.base);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NOFOLLOW
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let sql = |source| ConfineError::Sqlite {
            path: path.to_string(),
            source,
        };
        let conn = Connection::open_with_flags(&real, flags).map_err(sql)?;
        let now = std::fs::symlink_metadata(&real).map_err(|e| io_err(path, e))?;
        if (now.dev(), now.ino()) != self.key() {
            return Err(refused(
                path,
                "the database file changed while it was being opened",
            ));
        }
        conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)
            .map_err(sql)?;
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)
            .map_err(sql)?;
        Ok((conn, self.dir))
    }
}

impl Db {
    /// Opens the database and begins its transaction.
    pub fn open(file: SqliteFile, max_rows: usize, failures: Failures) -> Result<Db, ConfineError> {
        let (key, path) = (file.key(), file.path.clone());
        let path = path.as_str();
        let (mut conn, dir) = file.connect()?;
        conn.execute_batch("BEGIN IMMEDIATE")
            .and_then(|()| conn.authorizer(Some(guard)))
            .map_err(|source| ConfineError::Sqlite {
                path: path.to_string(),
                source,
            })?;
        Ok(Db {
            inner: Arc::new(DbInner {
                conn: Mutex::new(conn),
                path: path.to_string(),
                key,
                max_rows,
                failures,
                _dir: dir,
            }),
        })
    }

    pub fn key(&self) -> (u64, u64) {
        self.inner.key
    }

    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// A Rhai error for `e`, remembered as being about this database.
    pub fn raise(&self, e: &SqlError) -> Box<rhai::EvalAltResult> {
        self.inner
            .failures
            .raise(&self.inner.path, crate::error_chain(e))
    }

    fn sql_err(&self, source: rusqlite::Error) -> SqlError {
        SqlError::Sqlite {
            path: self.inner.path.clone(),
            source,
        }
    }

    /// Runs `f` on the connection, then checks the script's transaction is still open.
    fn with_conn<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, SqlError>,
    ) -> Result<T, SqlError> {
        let conn = crate::sync::lock(&self.inner.conn);
        let ended = || SqlError::TransactionEnded {
            path: self.inner.path.clone(),
        };
        if conn.is_autocommit() {
            return Err(ended());
        }
        let out = f(&conn);
        if conn.is_autocommit() {
            return Err(ended());
        }
        out
    }

    /// One statement with parameters; returns the rows changed.
    pub fn execute(&self, sql: &str, params: &[Dynamic]) -> Result<i64, SqlError> {
        let params = self.params(params)?;
        self.with_conn(|c| {
            let n = c
                .execute(sql, rusqlite::params_from_iter(params))
                .map_err(|e| self.sql_err(e))?;
            Ok(i64::try_from(n).unwrap_or(i64::MAX))
        })
    }

    /// Several statements, without parameters.
    pub fn execute_batch(&self, sql: &str) -> Result<(), SqlError> {
        self.with_conn(|c| c.execute_batch(sql).map_err(|e| self.sql_err(e)))
    }

    /// The rows of a query, each a map column → value.
    pub fn query(&self, sql: &str, params: &[Dynamic]) -> Result<Array, SqlError> {
        let params = self.params(params)?;
        self.with_conn(|c| {
            let mut stmt = c.prepare(sql).map_err(|e| self.sql_err(e))?;
            let names: Vec<String> = stmt.column_names().map(str::to_string).collect();
            let mut rows = stmt
                .query(rusqlite::params_from_iter(params))
                .map_err(|e| self.sql_err(e))?;
            let mut out = Array::new();
            while let Some(row) = rows.next().map_err(|e| self.sql_err(e))? {
                if out.len() >= self.inner.max_rows {
                    return Err(SqlError::TooManyRows {
                        path: self.inner.path.clone(),
                        limit: self.inner.max_rows,
                    });
                }
                let mut m = Map::new();
                for (i, name) in names.iter().enumerate() {
                    let v = row.get_ref(i).map_err(|e| self.sql_err(e))?;
                    m.insert(name.as_str().into(), to_rhai(v));
                }
                out.push(m.into());
            }
            Ok(out)
        })
    }

    /// Commits (`true`) or rolls back the script's transaction.
    pub fn finish(&self, commit: bool) -> Result<(), SqlError> {
        let mut conn = crate::sync::lock(&self.inner.conn);
        if conn.is_autocommit() {
            return Ok(());
        }
        let sql = if commit { "COMMIT" } else { "ROLLBACK" };
        conn.authorizer(None::<fn(AuthContext<'_>) -> Authorization>)
            .and_then(|()| conn.execute_batch(sql))
            .map_err(|e| self.sql_err(e))
    }

    fn params(&self, params: &[Dynamic]) -> Result<Vec<Value>, SqlError> {
        params
            .iter()
            .enumerate()
            .map(|(i, p)| {
                to_sql(p).ok_or_else(|| SqlError::Param {
                    path: self.inner.path.clone(),
                    index: i + 1,
                    kind: p.type_name().to_string(),
                })
            })
            .collect()
    }
}

/// What a script's SQL may not do: end or start the transaction nemoclaw holds, or reach
/// another database file.
fn guard(ctx: AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Transaction { .. } | AuthAction::Attach { .. } | AuthAction::Detach { .. } => {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }
}

fn to_sql(p: &Dynamic) -> Option<Value> {
    if p.is_unit() {
        return Some(Value::Null);
    }
    if let Some(i) = p.clone().try_cast::<rhai::INT>() {
        return Some(Value::Integer(i));
    }
    if let Some(f) = p.clone().try_cast::<rhai::FLOAT>() {
        return Some(Value::Real(f));
    }
    if let Some(b) = p.clone().try_cast::<bool>() {
        return Some(Value::Integer(i64::from(b)));
    }
    if let Some(s) = p.clone().try_cast::<ImmutableString>() {
        return Some(Value::Text(s.to_string()));
    }
    p.clone().try_cast::<Blob>().map(Value::Blob)
}

fn to_rhai(v: ValueRef<'_>) -> Dynamic {
    match v {
        ValueRef::Null => Dynamic::UNIT,
        ValueRef::Integer(i) => i.into(),
        ValueRef::Real(f) => f.into(),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned().into(),
        ValueRef::Blob(b) => Dynamic::from_blob(b.to_vec()),
    }
}
