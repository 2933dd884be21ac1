//! Reading and atomically writing single files beneath the confined state dir.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::{fstat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, Gid, Uid, UnlinkatFlags};

use super::{
    check_regular, checked, io_err, is_type, lstat_at, set_owner_mode, ConfineError, StateRoot,
    NEW_FILE_MODE,
};

impl StateRoot {
    /// Reads a regular file, refusing it before reading if it is larger than `max` bytes.
    pub fn read(&self, path: &str, max: u64) -> Result<Vec<u8>, ConfineError> {
        let rel = checked(path)?.join("/");
        let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
        let fd = self.resolve(&rel, path, flags)?;
        let st = fstat(&fd).map_err(|e| io_err(path, e))?;
        check_regular(path, &st)?;
        let size = u64::try_from(st.st_size).unwrap_or(0);
        if size > max {
            return Err(ConfineError::TooLarge {
                path: path.to_string(),
                size,
                limit: max,
            });
        }
        let mut out = Vec::new();
        File::from(fd)
            .take(max.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| io_err(path, e))?;
        if out.len() as u64 > max {
            return Err(ConfineError::TooLarge {
                path: path.to_string(),
                size: out.len() as u64,
                limit: max,
            });
        }
        Ok(out)
    }

    /// Replaces (or creates) a file atomically with `bytes`.
    pub fn write(&self, path: &str, bytes: &[u8]) -> Result<(), ConfineError> {
        self.replace_with(path, |f| f.write_all(bytes))
    }

    /// Replaces (or creates) a file atomically: `fill` writes a temporary file in the same
    /// directory, which is renamed over the target, so no reader ever sees a torn file. A
    /// replaced file keeps its mode and owner; a new one gets the state dir's owner and
    /// [`NEW_FILE_MODE`]. Durability comes from one [`StateRoot::sync`] at the end of a run
    /// (an fsync per file cost an upgrade of 1,000 files seconds; a crash before the sync is
    /// rolled back from the snapshot anyway).
    pub fn replace_with(
        &self,
        path: &str,
        fill: impl FnOnce(&mut File) -> std::io::Result<()>,
    ) -> Result<(), ConfineError> {
        let (dir, base) = self.write_target(path, true)?;
        let (mode, uid, gid) = match lstat_at(&dir, &base, path)? {
            Some(st) => {
                check_regular(path, &st)?;
                (
                    st.st_mode & 0o7777,
                    Uid::from_raw(st.st_uid),
                    Gid::from_raw(st.st_gid),
                )
            }
            None => {
                let (uid, gid) = self.owner();
                (NEW_FILE_MODE, uid, gid)
            }
        };
        let tmp = temp_name(&base);
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(&dir, tmp.as_str(), flags, Mode::from_bits_truncate(0o600))
            .map_err(|e| io_err(path, e))?;
        let mut file = File::from(fd);
        let done = fill(&mut file)
            .and_then(|()| set_owner_mode(&file, uid, gid, mode))
            .and_then(|()| Ok(renameat(&dir, tmp.as_str(), &dir, base.as_str())?));
        if let Err(e) = done {
            let _ = unlinkat(&dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(io_err(path, e));
        }
        Ok(())
    }

    /// Appends to a file (created with the state dir's owner if missing).
    pub fn append(&self, path: &str, bytes: &[u8]) -> Result<(), ConfineError> {
        let (dir, base) = self.write_target(path, true)?;
        let mut file = self.open_append(&dir, &base, path)?;
        let st = fstat(&file).map_err(|e| io_err(path, e))?;
        check_regular(path, &st)?;
        file.write_all(bytes).map_err(|e| io_err(path, e))
    }

    fn open_append(&self, dir: &OwnedFd, base: &str, path: &str) -> Result<File, ConfineError> {
        let flags = OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
        let flags = flags | OFlag::O_CLOEXEC;
        match openat(dir, base, flags, Mode::empty()) {
            Ok(fd) => Ok(File::from(fd)),
            Err(Errno::ENOENT) => self.create_new(dir, base, path, flags),
            Err(e) => Err(io_err(path, e)),
        }
    }

    /// Creates a new, empty file `base` in `dir` with the state dir's owner and
    /// [`NEW_FILE_MODE`].
    pub(crate) fn create_new(
        &self,
        dir: &OwnedFd,
        base: &str,
        path: &str,
        flags: OFlag,
    ) -> Result<File, ConfineError> {
        let flags = flags | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW;
        let mode = Mode::from_bits_truncate(NEW_FILE_MODE);
        let fd = openat(dir, base, flags, mode).map_err(|e| io_err(path, e))?;
        let file = File::from(fd);
        set_owner_mode(&file, self.owner().0, self.owner().1, NEW_FILE_MODE)
            .map_err(|e| io_err(path, e))?;
        Ok(file)
    }

    /// Whether the path exists (a dangling symlink does not); a path leading outside is refused.
    pub fn exists(&self, path: &str) -> Result<bool, ConfineError> {
        Ok(self.stat(path)?.is_some())
    }

    /// Whether the path is a directory (following symlinks that stay inside).
    pub fn is_dir(&self, path: &str) -> Result<bool, ConfineError> {
        Ok(self
            .stat(path)?
            .is_some_and(|st| is_type(&st, SFlag::S_IFDIR)))
    }

    fn stat(&self, path: &str) -> Result<Option<FileStat>, ConfineError> {
        let rel = checked(path)?.join("/");
        match self.resolve(&rel, path, OFlag::O_PATH) {
            Ok(fd) => Ok(Some(fstat(&fd).map_err(|e| io_err(path, e))?)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A fresh name for a temporary file beside `base` (kept under NAME_MAX).
fn temp_name(base: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut stem: String = base.chars().take(64).collect();
    stem.retain(|c| c != '/');
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    format!(".{stem}.nemoclaw-tmp-{}-{n}", std::process::id())
}
