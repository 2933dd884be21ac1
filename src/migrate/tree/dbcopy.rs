//! SQLite databases copied with the online backup API: a consistent copy of a database that a
//! running agent may be writing, without its `-wal`/`-shm`/`-journal` files (the copy is
//! complete in itself). A database that stays busy for [`BUSY_LIMIT`], or that the backup API
//! cannot read, is left to the caller's raw copy of the file and its siblings.

use std::fs::{self, File};
use std::io::Read;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::{base_entry, hash_reader, io_err, set_file_owner_mode_times, Entry, EntryType, Item};
use crate::migrate::snapshot::SnapshotError;

/// Files SQLite keeps beside a database `db`: `db-wal`, `db-shm`, `db-journal`.
pub(super) const SIBLING_SUFFIXES: [&str; 3] = ["-wal", "-shm", "-journal"];
/// The first 16 bytes of every SQLite database file.
const HEADER: &[u8; 16] = b"SQLite format 3\0";
/// How long a busy database is retried before the raw copy.
pub const BUSY_LIMIT: Duration = Duration::from_secs(1);
const RETRY_PAUSE: Duration = Duration::from_millis(10);

/// Whether `path` starts with the SQLite header.
pub(super) fn is_sqlite(path: &Path) -> Result<bool, SnapshotError> {
    let mut head = [0u8; 16];
    let mut f = File::open(path).map_err(io_err("open", path))?;
    match f.read_exact(&mut head) {
        Ok(()) => Ok(&head == HEADER),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(io_err("read", path)(e)),
    }
}

/// Copies the database `item` to `to` with the backup API, giving the copy the original's
/// owner, mode and times. None (and no `to`) when the database stayed busy or could not be
/// backed up: the caller copies it raw.
pub(super) fn backup(item: &Item<'_>, to: &Path) -> Result<Option<Entry>, SnapshotError> {
    let outcome = run_backup(item.path, to);
    if !matches!(outcome, Ok(true)) {
        match outcome {
            Ok(_) => {
                tracing::warn!(db = %item.path.display(), "database busy for {BUSY_LIMIT:?}: copied raw")
            }
            Err(e) => {
                tracing::warn!(db = %item.path.display(), error = %e, "backup API failed: copied raw")
            }
        }
        return remove_partial_copy(to).map(|()| None);
    }
    let mut copy = File::open(to).map_err(io_err("open", to))?;
    let mut entry = base_entry(item.rel, EntryType::File, item.meta);
    entry.sha256 = Some(hash_reader(&mut copy, None, to)?);
    entry.size = copy.metadata().map_err(io_err("inspect", to))?.len();
    set_file_owner_mode_times(&copy, to, item.meta)?;
    Ok(Some(entry))
}

/// Ok(false) when the source stayed busy for [`BUSY_LIMIT`].
fn run_backup(src: &Path, dst: &Path) -> rusqlite::Result<bool> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let from = Connection::open_with_flags(src, flags)?;
    let mut to = Connection::open(dst)?;
    if !step_to_done(&Backup::new(&from, &mut to)?)? {
        return Ok(false);
    }
    to.close().map_err(|(_, e)| e)?;
    Ok(true)
}

fn step_to_done(backup: &Backup<'_, '_>) -> rusqlite::Result<bool> {
    let started = Instant::now();
    loop {
        match backup.step(-1)? {
            StepResult::Done => return Ok(true),
            StepResult::More => {}
            _busy_or_locked if started.elapsed() >= BUSY_LIMIT => return Ok(false),
            _busy_or_locked => thread::sleep(RETRY_PAUSE),
        }
    }
}

/// Removes what a failed backup left at `to` (the database and any journal of it).
fn remove_partial_copy(to: &Path) -> Result<(), SnapshotError> {
    let mut paths = vec![to.to_path_buf()];
    paths.extend(SIBLING_SUFFIXES.iter().map(|s| {
        let mut p = to.as_os_str().to_owned();
        p.push(s);
        p.into()
    }));
    for p in paths {
        match fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_err("remove", &p)(e))
            }
            _ => {}
        }
    }
    Ok(())
}
