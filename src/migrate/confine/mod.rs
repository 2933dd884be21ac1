//! The state directory, opened once, and every file operation a migration may do in it.
//!
//! Paths are relative to the state dir. A path that is absolute, empty, holds NUL or any `..`
//! component is refused before the kernel sees it; everything else is resolved by the kernel
//! with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` from the state dir's fd, so a
//! symlink that leads outside fails with `EXDEV` (refused) while one that stays inside is
//! followed. A regular file with more than one hard link is refused for any read or write: it
//! may be a link to a file outside the state dir. Reads and atomic writes of one file live in
//! [`file`]; tree operations (list, copy, rename, remove, mkdir) in
//! [`tree`], which never follow symlinks into directories.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fchmod, fstat, fstatat, FileStat, Mode, SFlag};
use nix::unistd::{fchown, Gid, Uid};

mod file;
mod tree;

/// Mode of a file a migration creates (the agent must be able to read and write it).
pub const NEW_FILE_MODE: u32 = 0o644;
/// Mode of a directory a migration creates.
pub const NEW_DIR_MODE: u32 = 0o755;
/// Symlinks followed at the end of a path that is written to, before giving up.
const MAX_SYMLINK_HOPS: usize = 40;

/// Why a state operation failed. Every variant names the state path (relative to the state dir).
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("state path `{path}` refused: {reason}")]
    Refused { path: String, reason: String },
    #[error("state path `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("state path `{path}` is {size} bytes, over the limit of {limit}")]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("cannot open the state dir {}", dir.display())]
    OpenRoot {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("glob `{pattern}` is not valid")]
    Glob {
        pattern: String,
        #[source]
        source: globset::Error,
    },
    #[error("state path `{path}`: SQLite")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
}

impl ConfineError {
    /// The state path the error is about, if any.
    pub fn state_path(&self) -> Option<&str> {
        match self {
            ConfineError::Refused { path, .. }
            | ConfineError::Io { path, .. }
            | ConfineError::TooLarge { path, .. }
            | ConfineError::Sqlite { path, .. } => Some(path),
            ConfineError::Glob { pattern, .. } => Some(pattern),
            ConfineError::OpenRoot { .. } => None,
        }
    }

    /// Whether the path (or a directory on the way) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ConfineError::Io { source, .. }
            if source.kind() == std::io::ErrorKind::NotFound
                || source.raw_os_error() == Some(Errno::ENOTDIR as i32))
    }
}

pub(crate) fn refused(path: &str, reason: impl Into<String>) -> ConfineError {
    ConfineError::Refused {
        path: path.to_string(),
        reason: reason.into(),
    }
}

pub(crate) fn io_err(path: &str, e: impl Into<std::io::Error>) -> ConfineError {
    ConfineError::Io {
        path: path.to_string(),
        source: e.into(),
    }
}

/// A state path checked and normalised: relative, no `..`, no NUL; `.` and empty components
/// dropped. An empty list of parts names the state dir itself.
pub(crate) fn checked(path: &str) -> Result<Vec<&str>, ConfineError> {
    if path.is_empty() {
        return Err(refused(path, "the path is empty"));
    }
    if path.contains('\0') {
        return Err(refused(path, "the path contains NUL"));
    }
    if path.starts_with('/') {
        return Err(refused(
            path,
            "absolute paths are not allowed: paths are relative to the state dir",
        ));
    }
    let parts: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(refused(path, "`..` is not allowed in state paths"));
    }
    Ok(parts)
}

/// Splits a normalised relative path into its parent (`.` for the top) and last component.
pub(crate) fn split_last(rel: &str) -> (&str, &str) {
    rel.rsplit_once('/').unwrap_or((".", rel))
}

pub(crate) fn is_type(st: &FileStat, kind: SFlag) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == kind
}

/// Refuses anything but a regular file with a single link.
pub(crate) fn check_regular(path: &str, st: &FileStat) -> Result<(), ConfineError> {
    if is_type(st, SFlag::S_IFDIR) {
        return Err(refused(path, "it is a directory"));
    }
    if !is_type(st, SFlag::S_IFREG) {
        return Err(refused(path, "it is not a regular file"));
    }
    if st.st_nlink > 1 {
        return Err(refused(
            path,
            format!(
                "it has {} hard links: it may be a link to a file outside the state dir",
                st.st_nlink
            ),
        ));
    }
    Ok(())
}

/// The state dir, opened once (`O_PATH`, never following a symlink at its own path).
#[derive(Debug)]
pub struct StateRoot {
    fd: OwnedFd,
    dir: PathBuf,
    uid: Uid,
    gid: Gid,
}

impl StateRoot {
    pub fn open(dir: &Path) -> Result<StateRoot, ConfineError> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let root_err = |e: Errno| ConfineError::OpenRoot {
            dir: dir.to_path_buf(),
            source: e.into(),
        };
        let fd = nix::fcntl::open(dir, flags, Mode::empty()).map_err(root_err)?;
        let st = fstat(&fd).map_err(root_err)?;
        Ok(StateRoot {
            fd,
            dir: dir.to_path_buf(),
            uid: Uid::from_raw(st.st_uid),
            gid: Gid::from_raw(st.st_gid),
        })
    }

    /// The state dir's path on the host (for messages).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Flushes every write under the state dir to disk: one syncfs for a whole run instead of
    /// an fsync per file written.
    pub fn sync(&self) -> Result<(), ConfineError> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let dir =
            nix::fcntl::openat(&self.fd, ".", flags, Mode::empty()).map_err(|e| io_err(".", e))?;
        nix::unistd::syncfs(&dir).map_err(|e| io_err(".", e))
    }

    /// Opens `rel` (already checked or built from a symlink target) beneath the state dir.
    pub(crate) fn resolve(
        &self,
        rel: &str,
        shown: &str,
        flags: OFlag,
    ) -> Result<OwnedFd, ConfineError> {
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        openat2(&self.fd, if rel.is_empty() { "." } else { rel }, how).map_err(|e| match e {
            Errno::EXDEV => refused(shown, "it leads outside the state dir"),
            Errno::ELOOP => refused(shown, "too many symlinks, or a magic link"),
            e => io_err(shown, e),
        })
    }

    /// The directory holding `rel`'s last component (created with its parents when `create`),
    /// and that component. `rel` must not name the state dir itself.
    pub(crate) fn parent_of(
        &self,
        rel: &str,
        shown: &str,
        create: bool,
    ) -> Result<(OwnedFd, String), ConfineError> {
        let (parent, base) = split_last(rel);
        if base.is_empty() || base == ".." {
            return Err(refused(shown, "the path names a directory, not an entry"));
        }
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
        let dir = match self.resolve(parent, shown, flags) {
            Err(e) if create && e.is_not_found() => {
                self.mkdir_all(parent, shown)?;
                self.resolve(parent, shown, flags)?
            }
            r => r?,
        };
        Ok((dir, base.to_string()))
    }

    /// Like [`Self::parent_of`] on a checked user path, but a symlink at the end is followed (it
    /// must stay inside): writes go to the file the link names, not over the link.
    pub(crate) fn write_target(
        &self,
        path: &str,
        create: bool,
    ) -> Result<(OwnedFd, String), ConfineError> {
        let mut rel = checked(path)?.join("/");
        for _ in 0..MAX_SYMLINK_HOPS {
            let (dir, base) = self.parent_of(&rel, path, create)?;
            match lstat_at(&dir, &base, path)? {
                Some(st) if is_type(&st, SFlag::S_IFLNK) => {
                    let target =
                        nix::fcntl::readlinkat(&dir, base.as_str()).map_err(|e| io_err(path, e))?;
                    rel = follow(&rel, &target.to_string_lossy(), path)?;
                }
                _ => return Ok((dir, base)),
            }
        }
        Err(refused(path, "too many symlinks"))
    }

    pub(crate) fn owner(&self) -> (Uid, Gid) {
        (self.uid, self.gid)
    }
}

/// `fstatat(AT_SYMLINK_NOFOLLOW)`; `None` when the entry does not exist.
pub(crate) fn lstat_at(
    dir: &OwnedFd,
    base: &str,
    path: &str,
) -> Result<Option<FileStat>, ConfineError> {
    match fstatat(dir, base, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(io_err(path, e)),
    }
}

/// The path a symlink at `rel` names, relative to the state dir (it may hold `..`, which the
/// kernel keeps beneath the state dir when resolving).
fn follow(rel: &str, target: &str, path: &str) -> Result<String, ConfineError> {
    if target.starts_with('/') {
        return Err(refused(
            path,
            "it is a symlink that leads outside the state dir",
        ));
    }
    let (parent, _) = split_last(rel);
    let joined = format!("{parent}/{target}");
    let parts: Vec<&str> = joined
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    match parts.last() {
        Some(last) if *last != ".." => Ok(parts.join("/")),
        _ => Err(refused(path, "it is a symlink to a directory")),
    }
}

/// Gives an open file the owner and mode it must end with (owner first: chown clears setuid).
pub(crate) fn set_owner_mode(
    file: &impl AsFd,
    uid: Uid,
    gid: Gid,
    mode: u32,
) -> std::io::Result<()> {
    let st = fstat(file.as_fd())?;
    if st.st_uid != uid.as_raw() || st.st_gid != gid.as_raw() {
        fchown(file.as_fd(), Some(uid), Some(gid))?;
    }
    fchmod(file.as_fd(), Mode::from_bits_truncate(mode))?;
    Ok(())
}

/// The host path of an open directory, as the kernel names it.
pub(crate) fn fd_path(fd: &OwnedFd) -> std::io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests;
