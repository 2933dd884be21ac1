//! The supervisor's liveness lock on `run/<name>/supervisor.pid`: an exclusive flock held for
//! the process's life, with the holder's pid and role written into the file for messages.
//!
//! Unlike `home::FileLock` it neither truncates nor fsyncs (the content is advisory, the lock
//! is the truth), which keeps `nemoclaw run` fast on a busy disk: the record is written as a
//! fixed-size block over the previous one.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Size of the record written into the pid file (pid, role, newline padding).
const RECORD: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum PidLockError {
    #[error("held by process {pid} ({what})")]
    Held { pid: String, what: String },
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct PidLock {
    _lock: Flock<File>,
}

impl PidLock {
    /// Takes the lock at once or reports who holds it.
    pub fn try_acquire(path: &Path, what: &str) -> Result<PidLock, PidLockError> {
        let io = |source| PidLockError::Io {
            path: path.to_path_buf(),
            source,
        };
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => {
                let mut rec = format!("{}\n{what}\n", std::process::id()).into_bytes();
                rec.resize(RECORD.max(rec.len()), b'\n');
                lock.write_all_at(&rec, 0).map_err(io)?;
                Ok(PidLock { _lock: lock })
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                let (pid, what) = crate::home::read_holder(path);
                Err(PidLockError::Held {
                    pid,
                    what: what.unwrap_or_else(|| "unknown".into()),
                })
            }
            Err((_, e)) => Err(io(e.into())),
        }
    }
}

/// Whether some process holds the lock (without writing anything).
pub fn is_held(path: &Path) -> bool {
    let Ok(f) = File::open(path) else {
        return false;
    };
    matches!(
        Flock::lock(f, FlockArg::LockExclusiveNonblock),
        Err((_, nix::errno::Errno::EWOULDBLOCK))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("supervisor.pid");
        assert!(!is_held(&p));
        let held = PidLock::try_acquire(&p, "nemoclaw run").unwrap();
        assert!(is_held(&p));
        let err = PidLock::try_acquire(&p, "other").unwrap_err().to_string();
        assert!(
            err.contains(&std::process::id().to_string()) && err.contains("nemoclaw run"),
            "{err}"
        );
        drop(held);
        assert!(!is_held(&p));
        let _again = PidLock::try_acquire(&p, "x").unwrap();
        assert_eq!(
            crate::home::read_holder(&p),
            (std::process::id().to_string(), Some("x".to_string()))
        );
    }
}
