//! Tree operations on the confined state dir: mkdir -p, list (glob), rename, copy, remove.
//! Walks open each directory with `openat(O_NOFOLLOW)` from its parent's fd, so they never
//! follow a symlink into a directory; a symlink is listed, copied or removed as a link.

use std::fs::File;
use std::os::fd::OwnedFd;

use globset::GlobBuilder;
use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, renameat, AtFlags, OFlag};
use nix::sys::stat::{fstat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{fchownat, fsync, symlinkat, unlinkat, UnlinkatFlags};

use super::{
    check_regular, checked, io_err, is_type, lstat_at, refused, set_owner_mode, ConfineError,
    StateRoot, NEW_DIR_MODE,
};

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// One entry of a directory: its name and whether it is a real directory (not a link to one).
struct Entry {
    name: String,
    is_dir: bool,
}

/// The entries of an open directory (without `.` and `..`), read before any change to it.
fn entries(dir: &OwnedFd, path: &str) -> Result<Vec<Entry>, ConfineError> {
    let fd = openat(dir, ".", DIR_FLAGS, Mode::empty()).map_err(|e| io_err(path, e))?;
    let mut d = Dir::from_fd(fd).map_err(|e| io_err(path, e))?;
    let mut out = Vec::new();
    for e in d.iter() {
        let e = e.map_err(|e| io_err(path, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "." || name == ".." {
            continue;
        }
        let is_dir = match e.file_type() {
            Some(t) => t == Type::Directory,
            None => lstat_at(dir, &name, path)?.is_some_and(|st| is_type(&st, SFlag::S_IFDIR)),
        };
        out.push(Entry { name, is_dir });
    }
    Ok(out)
}

fn open_child(dir: &OwnedFd, name: &str, path: &str) -> Result<OwnedFd, ConfineError> {
    openat(dir, name, DIR_FLAGS, Mode::empty()).map_err(|e| io_err(path, e))
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

impl StateRoot {
    /// `mkdir -p`: creates the directory and its parents (state dir owner, [`NEW_DIR_MODE`]);
    /// fine if it already exists as a directory.
    pub fn mkdir(&self, path: &str) -> Result<(), ConfineError> {
        let rel = checked(path)?.join("/");
        self.mkdir_all(&rel, path)
    }

    /// `mkdir -p` of a normalised relative path (it may hold `..` from a symlink target).
    pub(crate) fn mkdir_all(&self, rel: &str, shown: &str) -> Result<(), ConfineError> {
        let mut prefix = String::new();
        for comp in rel.split('/').filter(|c| !c.is_empty() && *c != ".") {
            if comp != ".." {
                let parent = self.resolve(&prefix, shown, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
                self.make_dir(&parent, comp, shown)?;
            }
            prefix = join(&prefix, comp);
        }
        match self.resolve(&prefix, shown, OFlag::O_PATH | OFlag::O_DIRECTORY) {
            Err(ConfineError::Io { source, .. })
                if source.raw_os_error() == Some(Errno::ENOTDIR as i32) =>
            {
                Err(refused(shown, "it exists and is not a directory"))
            }
            r => r.map(drop),
        }
    }

    /// Creates one directory `name` in `parent` with the state dir's owner; fine if it exists.
    fn make_dir(&self, parent: &OwnedFd, name: &str, shown: &str) -> Result<(), ConfineError> {
        match mkdirat(parent, name, Mode::from_bits_truncate(NEW_DIR_MODE)) {
            Ok(()) => {
                let fd = open_child(parent, name, shown)?;
                let (uid, gid) = self.owner();
                set_owner_mode(&fd, uid, gid, NEW_DIR_MODE).map_err(|e| io_err(shown, e))
            }
            Err(Errno::EEXIST) => Ok(()),
            Err(e) => Err(io_err(shown, e)),
        }
    }

    /// Relative paths of the files and directories matching `glob` (`*` within one directory,
    /// `**` across), sorted. Symlinks are listed but never followed.
    pub fn list(&self, glob: &str) -> Result<Vec<String>, ConfineError> {
        if glob.starts_with('/') || glob.split('/').any(|c| c == "..") {
            return Err(refused(
                glob,
                "globs are relative to the state dir, without `..`",
            ));
        }
        let matcher = GlobBuilder::new(glob)
            .literal_separator(true)
            .build()
            .map_err(|source| ConfineError::Glob {
                pattern: glob.to_string(),
                source,
            })?
            .compile_matcher();
        let root = self.resolve("", glob, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
        let mut out = Vec::new();
        walk(&root, "", &mut |rel| {
            if matcher.is_match(rel) {
                out.push(rel.to_string());
            }
        })?;
        out.sort();
        Ok(out)
    }

    /// Renames an entry (a symlink is renamed itself); the target's parents are created.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), ConfineError> {
        let (src_dir, src) = self.parent_of(&checked(from)?.join("/"), from, false)?;
        match lstat_at(&src_dir, &src, from)? {
            None => return Err(io_err(from, Errno::ENOENT)),
            Some(st) if is_type(&st, SFlag::S_IFREG) => check_regular(from, &st)?,
            Some(_) => {}
        }
        let (dst_dir, dst) = self.parent_of(&checked(to)?.join("/"), to, true)?;
        renameat(&src_dir, src.as_str(), &dst_dir, dst.as_str()).map_err(|e| io_err(to, e))?;
        fsync(&src_dir)
            .and_then(|()| fsync(&dst_dir))
            .map_err(|e| io_err(to, e))
    }

    /// Copies a file (atomically, over an existing file) or a directory tree (to a path that
    /// does not exist yet). Symlinks inside a tree are copied as links.
    pub fn copy(&self, from: &str, to: &str) -> Result<(), ConfineError> {
        let rel = checked(from)?.join("/");
        let src = self.resolve(&rel, from, OFlag::O_RDONLY | OFlag::O_NONBLOCK)?;
        let st = fstat(&src).map_err(|e| io_err(from, e))?;
        if !is_type(&st, SFlag::S_IFDIR) {
            check_regular(from, &st)?;
            let mut src = File::from(src);
            return self.replace_with(to, |f| std::io::copy(&mut src, f).map(drop));
        }
        let (dst_parent, dst_name) = self.parent_of(&checked(to)?.join("/"), to, true)?;
        if lstat_at(&dst_parent, &dst_name, to)?.is_some() {
            return Err(refused(
                to,
                "copying a directory needs a target that does not exist",
            ));
        }
        self.make_dir(&dst_parent, &dst_name, to)?;
        let dst = open_child(&dst_parent, &dst_name, to)?;
        let dst_st = fstat(&dst).map_err(|e| io_err(to, e))?;
        self.copy_tree(&src, &dst, (dst_st.st_dev, dst_st.st_ino), from)?;
        fsync(&dst_parent).map_err(|e| io_err(to, e))
    }

    /// Copies the contents of `src` into `dst`, skipping `dst` itself if it lies inside `src`.
    fn copy_tree(
        &self,
        src: &OwnedFd,
        dst: &OwnedFd,
        skip: (u64, u64),
        path: &str,
    ) -> Result<(), ConfineError> {
        for e in entries(src, path)? {
            let shown = join(path, &e.name);
            let st =
                lstat_at(src, &e.name, &shown)?.ok_or_else(|| io_err(&shown, Errno::ENOENT))?;
            if e.is_dir {
                if (st.st_dev, st.st_ino) == skip {
                    continue;
                }
                self.make_dir(dst, &e.name, &shown)?;
                let (s, d) = (
                    open_child(src, &e.name, &shown)?,
                    open_child(dst, &e.name, &shown)?,
                );
                self.copy_tree(&s, &d, skip, &shown)?;
            } else {
                self.copy_entry(src, dst, &e.name, &st, &shown)?;
            }
        }
        Ok(())
    }

    /// Copies one non-directory entry: a regular file's bytes, or a symlink as a link.
    fn copy_entry(
        &self,
        src: &OwnedFd,
        dst: &OwnedFd,
        name: &str,
        st: &FileStat,
        shown: &str,
    ) -> Result<(), ConfineError> {
        let (uid, gid) = self.owner();
        if is_type(st, SFlag::S_IFLNK) {
            let target = readlinkat(src, name).map_err(|e| io_err(shown, e))?;
            symlinkat(target.as_os_str(), dst, name).map_err(|e| io_err(shown, e))?;
            return fchownat(
                dst,
                name,
                Some(uid),
                Some(gid),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| io_err(shown, e));
        }
        check_regular(shown, st)?;
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let mut from =
            File::from(openat(src, name, flags, Mode::empty()).map_err(|e| io_err(shown, e))?);
        let mut to = self.create_new(dst, name, shown, OFlag::O_WRONLY | OFlag::O_CLOEXEC)?;
        std::io::copy(&mut from, &mut to)
            .and_then(|_| to.sync_all())
            .map_err(|e| io_err(shown, e))
    }

    /// Removes a file, a symlink (not what it names) or a directory tree; `false` if there was
    /// nothing to remove.
    pub fn remove(&self, path: &str) -> Result<bool, ConfineError> {
        let (dir, base) = self.parent_of(&checked(path)?.join("/"), path, false)?;
        let Some(st) = lstat_at(&dir, &base, path)? else {
            return Ok(false);
        };
        if is_type(&st, SFlag::S_IFDIR) {
            remove_tree(&dir, &base, path)?;
        } else {
            unlinkat(&dir, base.as_str(), UnlinkatFlags::NoRemoveDir)
                .map_err(|e| io_err(path, e))?;
        }
        fsync(&dir).map_err(|e| io_err(path, e))?;
        Ok(true)
    }
}

/// Calls `visit` with the relative path of every entry below `dir`, depth first.
fn walk(dir: &OwnedFd, prefix: &str, visit: &mut dyn FnMut(&str)) -> Result<(), ConfineError> {
    for e in entries(dir, if prefix.is_empty() { "." } else { prefix })? {
        let rel = join(prefix, &e.name);
        visit(&rel);
        if e.is_dir {
            let child = open_child(dir, &e.name, &rel)?;
            walk(&child, &rel, visit)?;
        }
    }
    Ok(())
}

/// Removes the directory `name` in `parent` and everything below it.
fn remove_tree(parent: &OwnedFd, name: &str, path: &str) -> Result<(), ConfineError> {
    let dir = open_child(parent, name, path)?;
    for e in entries(&dir, path)? {
        if e.is_dir {
            remove_tree(&dir, &e.name, &join(path, &e.name))?;
        } else {
            unlinkat(&dir, e.name.as_str(), UnlinkatFlags::NoRemoveDir)
                .map_err(|err| io_err(&join(path, &e.name), err))?;
        }
    }
    unlinkat(parent, name, UnlinkatFlags::RemoveDir).map_err(|e| io_err(path, e))
}
