//! SQLite databases: the schema (`sqlite_master`) as text and the rows in every table, read
//! through a read-only connection on a private copy (even a read-only connection leaves
//! `-wal` and `-shm` files beside a WAL database, so the trees compared are never opened).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, DirBuilder, File};
use std::io::{self, Read as _};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags};

use super::content::{io_at, unified, Sides};
use super::{Content, PreviewError, TableRows};

/// The first 16 bytes of every SQLite 3 database file.
const HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Whether the file starts with the SQLite 3 header.
pub(super) fn is_database(path: &Path) -> io::Result<bool> {
    let mut head = [0u8; 16];
    match File::open(path)?.read_exact(&mut head) {
        Ok(()) => Ok(&head == HEADER),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// What the preview reads of a database.
struct Summary {
    /// Every `sqlite_master.sql`, ordered by type and name, each ending in `;\n`.
    schema: String,
    /// Rows per table (internal `sqlite_*` tables left out).
    rows: BTreeMap<String, u64>,
}

/// The schema diff and row counts of two databases; a database that cannot be read makes
/// it a binary change with a note saying why.
pub(super) fn diff(s: &Sides<'_>) -> Result<Content, PreviewError> {
    let (old, new) = (s.before_path(), s.after_path());
    let scratch = Scratch::new()?;
    let a = scratch.copy_in(&old, "before.db")?;
    let b = scratch.copy_in(&new, "after.db")?;
    Ok(match read(&a).and_then(|a| Ok((a, read(&b)?))) {
        Ok((a, b)) => {
            let (schema_diff, omitted_lines) = if a.schema == b.schema {
                (String::new(), 0)
            } else {
                unified(s.rel, &a.schema, &b.schema)
            };
            Content::Sqlite {
                schema_diff,
                omitted_lines,
                tables: table_rows(&a.rows, &b.rows),
            }
        }
        Err(e) => Content::Binary {
            size_before: len(&old),
            size_after: len(&new),
            note: Some(format!("SQLite database not readable: {e}")),
        },
    })
}

/// A private directory (mode 0700) in the system's temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Self, PreviewError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "nemoclaw-preview-{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(io_at(&dir))?;
        Ok(Self(dir))
    }

    /// Copies the database `src` (and its `-wal`, which may hold committed transactions)
    /// into the scratch directory as `name`; returns the copy's path.
    fn copy_in(&self, src: &Path, name: &str) -> Result<PathBuf, PreviewError> {
        let dst = self.0.join(name);
        copy(src, &dst)?;
        let wal = with_suffix(src, "-wal");
        if wal.exists() {
            copy(&wal, &with_suffix(&dst, "-wal"))?;
        }
        Ok(dst)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn copy(src: &Path, dst: &Path) -> Result<(), PreviewError> {
    fs::copy(src, dst).map(drop).map_err(io_at(src))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn len(path: &Path) -> u64 {
    path.metadata().map(|m| m.len()).unwrap_or(0)
}

/// Every table on either side, by name, with its rows before and after.
fn table_rows(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> Vec<TableRows> {
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    names
        .into_iter()
        .map(|name| TableRows {
            name: name.clone(),
            before: a.get(name).copied(),
            after: b.get(name).copied(),
        })
        .collect()
}

fn read(path: &Path) -> rusqlite::Result<Summary> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let db = Connection::open_with_flags(path, flags)?;
    let schema = db
        .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type, name")?
        .query_map([], |r| r.get::<_, String>(0))?
        .map(|sql| sql.map(|s| s + ";\n"))
        .collect::<rusqlite::Result<String>>()?;
    let tables = db
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
        )?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut rows = BTreeMap::new();
    for name in tables {
        let sql = format!("SELECT count(*) FROM \"{}\"", name.replace('"', "\"\""));
        let n: i64 = db.query_row(&sql, [], |r| r.get(0))?;
        rows.insert(name, u64::try_from(n).unwrap_or(0));
    }
    Ok(Summary { schema, rows })
}
