//! Copying and hashing a directory tree without following symlinks. A copy keeps each entry's
//! type, mode, owner and times; regular files are cloned with the FICLONE ioctl where the
//! filesystem allows it (btrfs, xfs) and copied otherwise. Fifos, sockets and devices are
//! skipped (and counted): they are not state. [`tree_hash`] hashes exactly what a copy keeps.

mod dbcopy;

pub use dbcopy::BUSY_LIMIT;

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{futimens, utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::snapshot::SnapshotError;

/// What [`copy_tree`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Regular files copied.
    pub files: u64,
    /// Bytes of those files.
    pub bytes: u64,
    /// Whether the files were cloned with FICLONE (false: copied).
    pub reflinked: bool,
    /// Entries that are neither directories, regular files nor symlinks (not copied).
    pub skipped: u64,
}

/// The type of an entry of a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryType {
    Dir,
    File,
    Symlink,
}

/// One entry of a tree below its root: what a snapshot's manifest records for each file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative to the root, `/`-separated.
    pub path: String,
    #[serde(rename = "type")]
    pub kind: EntryType,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Bytes of a regular file (0 for the others).
    pub size: u64,
    /// Hex sha256 of a regular file's contents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A symlink's target, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// How a copy treats regular files.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CopyOptions {
    /// Hash every regular file (in the same read pass when it is copied).
    pub hash: bool,
    /// Copy SQLite databases with the online backup API (their -wal/-shm/-journal omitted).
    pub sqlite_backup: bool,
}

/// What [`copy_tree_with`] did, with the entries of the copy in walk order.
#[derive(Debug, Default)]
pub(crate) struct Copied {
    pub stats: CopyStats,
    pub entries: Vec<Entry>,
}

/// Copies the directory `src` to `dst` (which must not exist) preserving type, mode, owner,
/// times and symlinks (as links, target verbatim): FICLONE per file where the filesystem
/// allows, else a plain copy. Returns files and bytes copied.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<CopyStats, SnapshotError> {
    copy_tree_with(src, dst, CopyOptions::default()).map(|c| c.stats)
}

/// A stable hash (hex sha256) of the tree below `dir`: its entries sorted by relative path,
/// each with its type, mode and content hash or link target. Owners and times are left out;
/// so are the entries a copy skips (fifos, sockets, devices) and the root itself.
pub fn tree_hash(dir: &Path) -> Result<String, SnapshotError> {
    let mut entries = Vec::new();
    walk(dir, "", &mut |item| {
        if let Some(entry) = item.entry(true)? {
            entries.push(entry);
        }
        Ok(())
    })?;
    Ok(hash_entries(entries))
}

/// [`tree_hash`] of entries already collected (e.g. from a manifest).
pub(crate) fn hash_entries(mut entries: Vec<Entry>) -> String {
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let mut h = Sha256::new();
    for e in &entries {
        let content = e.sha256.as_deref().or(e.target.as_deref()).unwrap_or("");
        let line = format!("{}\0{:?}\0{:o}\0{content}\n", e.path, e.kind, e.mode);
        h.update(line.as_bytes());
    }
    hex(&h.finalize())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// [`copy_tree`] with options, returning the entries of the copy.
pub(crate) fn copy_tree_with(
    src: &Path,
    dst: &Path,
    options: CopyOptions,
) -> Result<Copied, SnapshotError> {
    let root = fs::symlink_metadata(src).map_err(io_err("inspect", src))?;
    if !root.is_dir() {
        return Err(SnapshotError::NotADirectory(src.to_path_buf()));
    }
    fs::create_dir(dst).map_err(io_err("create", dst))?;
    let mut copier = Copier::new(dst, options);
    walk(src, "", &mut |item| copier.visit(item))?;
    set_owner_mode_times(dst, &root)?;
    Ok(copier.done)
}

/// One step of a walk: entries come in sorted order; a directory is entered before its
/// contents and left after them.
pub(crate) enum Visit<'a> {
    Enter(Item<'a>),
    Leave(Item<'a>),
    Leaf(Item<'a>),
}

pub(crate) struct Item<'a> {
    pub path: &'a Path,
    pub rel: &'a str,
    pub meta: &'a Metadata,
}

impl Visit<'_> {
    /// The entry this step describes (None for a directory left, or a skipped type), its
    /// contents hashed when `hash`.
    fn entry(&self, hash: bool) -> Result<Option<Entry>, SnapshotError> {
        match self {
            Visit::Leave(_) => Ok(None),
            Visit::Enter(item) | Visit::Leaf(item) => describe(item, hash),
        }
    }
}

fn walk(
    dir: &Path,
    rel: &str,
    visit: &mut dyn FnMut(Visit<'_>) -> Result<(), SnapshotError>,
) -> Result<(), SnapshotError> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(io_err("list", dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io_err("list", dir))?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let name = name
            .to_str()
            .ok_or_else(|| SnapshotError::NotUtf8(path.clone()))?;
        let rel = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        let meta = fs::symlink_metadata(&path).map_err(io_err("inspect", &path))?;
        let item = || Item {
            path: &path,
            rel: &rel,
            meta: &meta,
        };
        if meta.is_dir() {
            visit(Visit::Enter(item()))?;
            walk(&path, &rel, visit)?;
            visit(Visit::Leave(item()))?;
        } else {
            visit(Visit::Leaf(item()))?;
        }
    }
    Ok(())
}

/// The entry of `item`; None for a type a copy skips.
fn describe(item: &Item<'_>, hash: bool) -> Result<Option<Entry>, SnapshotError> {
    let ft = item.meta.file_type();
    let mut entry = base_entry(item.rel, EntryType::File, item.meta);
    if ft.is_dir() {
        entry.kind = EntryType::Dir;
    } else if ft.is_symlink() {
        entry.kind = EntryType::Symlink;
        entry.target = Some(link_target(item.path)?);
    } else if ft.is_file() {
        entry.size = item.meta.len();
        if hash {
            let mut f = File::open(item.path).map_err(io_err("open", item.path))?;
            entry.sha256 = Some(hash_reader(&mut f, None, item.path)?);
        }
    } else {
        return Ok(None);
    }
    Ok(Some(entry))
}

fn base_entry(rel: &str, kind: EntryType, meta: &Metadata) -> Entry {
    Entry {
        path: rel.to_string(),
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        size: 0,
        sha256: None,
        target: None,
    }
}

fn link_target(path: &Path) -> Result<String, SnapshotError> {
    let target = fs::read_link(path).map_err(io_err("read the link", path))?;
    target
        .into_os_string()
        .into_string()
        .map_err(|_| SnapshotError::NotUtf8(path.to_path_buf()))
}

/// Reads `from` to its end, writing every chunk to `to` if given; returns the hex sha256.
fn hash_reader(
    from: &mut File,
    mut to: Option<(&mut File, &Path)>,
    path: &Path,
) -> Result<String, SnapshotError> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut h = Sha256::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("read", path)(e)),
        };
        h.update(&buf[..n]);
        if let Some((to, to_path)) = to.as_mut() {
            to.write_all(&buf[..n]).map_err(io_err("write", to_path))?;
        }
    }
    Ok(hex(&h.finalize()))
}

/// Walks a source tree and builds its copy.
struct Copier<'a> {
    dst: &'a Path,
    options: CopyOptions,
    /// Whether FICLONE works here: found out on the first regular file.
    reflink: Option<bool>,
    /// Databases copied with the backup API, whose journal siblings are left out.
    backed_up: HashSet<String>,
    /// The first copy of each multiply-linked source file, by (device, inode): its other names
    /// inside the tree become hard links to that copy, so a restore keeps the links a state had
    /// (a link to a file outside the tree has one name here and becomes a plain file).
    linked: HashMap<(u64, u64), (PathBuf, Entry)>,
    done: Copied,
}

impl<'a> Copier<'a> {
    fn new(dst: &'a Path, options: CopyOptions) -> Copier<'a> {
        Copier {
            dst,
            options,
            reflink: None,
            backed_up: HashSet::new(),
            linked: HashMap::new(),
            done: Copied::default(),
        }
    }

    fn visit(&mut self, visit: Visit<'_>) -> Result<(), SnapshotError> {
        match visit {
            Visit::Enter(item) => {
                let to = self.dst.join(item.rel);
                fs::create_dir(&to).map_err(io_err("create", &to))?;
                self.record(base_entry(item.rel, EntryType::Dir, item.meta));
            }
            Visit::Leave(item) => set_owner_mode_times(&self.dst.join(item.rel), item.meta)?,
            Visit::Leaf(item) => self.copy_leaf(&item)?,
        }
        Ok(())
    }

    fn record(&mut self, entry: Entry) {
        self.done.entries.push(entry);
    }

    fn copy_leaf(&mut self, item: &Item<'_>) -> Result<(), SnapshotError> {
        let to = self.dst.join(item.rel);
        let ft = item.meta.file_type();
        if ft.is_symlink() {
            let target = link_target(item.path)?;
            std::os::unix::fs::symlink(&target, &to).map_err(io_err("create the link", &to))?;
            set_owner_times(&to, item.meta)?;
            let mut entry = base_entry(item.rel, EntryType::Symlink, item.meta);
            entry.target = Some(target);
            self.record(entry);
        } else if ft.is_file() {
            if self.is_backed_up_sibling(item.rel) {
                return Ok(());
            }
            if let Some(entry) = self.link_again(item, &to)? {
                self.record(entry);
                return Ok(());
            }
            let entry = self.copy_file(item, &to)?;
            if item.meta.nlink() > 1 {
                let key = (item.meta.dev(), item.meta.ino());
                self.linked.insert(key, (to.clone(), entry.clone()));
            }
            self.done.stats.files += 1;
            self.done.stats.bytes += entry.size;
            self.record(entry);
        } else {
            self.done.stats.skipped += 1;
        }
        Ok(())
    }

    /// Links `to` to the copy already made of the same source inode, if there is one.
    fn link_again(&self, item: &Item<'_>, to: &Path) -> Result<Option<Entry>, SnapshotError> {
        let key = (item.meta.dev(), item.meta.ino());
        let Some((first, entry)) = self.linked.get(&key).filter(|_| item.meta.nlink() > 1) else {
            return Ok(None);
        };
        fs::hard_link(first, to).map_err(io_err("link", to))?;
        let mut entry = entry.clone();
        entry.path = item.rel.to_string();
        Ok(Some(entry))
    }

    /// A `-wal`, `-shm` or `-journal` file of a database copied with the backup API.
    fn is_backed_up_sibling(&self, rel: &str) -> bool {
        dbcopy::SIBLING_SUFFIXES.iter().any(|suffix| {
            rel.strip_suffix(suffix)
                .is_some_and(|db| self.backed_up.contains(db))
        })
    }

    fn copy_file(&mut self, item: &Item<'_>, to: &Path) -> Result<Entry, SnapshotError> {
        if self.options.sqlite_backup && dbcopy::is_sqlite(item.path)? {
            if let Some(entry) = dbcopy::backup(item, to)? {
                self.backed_up.insert(item.rel.to_string());
                return Ok(entry);
            }
        }
        let mut from = File::open(item.path).map_err(io_err("open", item.path))?;
        let mut out = create_file(to)?;
        let mut entry = base_entry(item.rel, EntryType::File, item.meta);
        entry.sha256 = if self.clone_file(&from, &out) {
            self.done.stats.reflinked = true;
            self.options
                .hash
                .then(|| hash_reader(&mut from, None, item.path))
                .transpose()?
        } else if self.options.hash {
            Some(hash_reader(&mut from, Some((&mut out, to)), item.path)?)
        } else {
            io::copy(&mut from, &mut out).map_err(io_err("copy", item.path))?;
            None
        };
        entry.size = out.metadata().map_err(io_err("inspect", to))?.len();
        set_file_owner_mode_times(&out, to, item.meta)?;
        Ok(entry)
    }

    /// Clones `from` into `to` with FICLONE unless it already failed in this tree.
    fn clone_file(&mut self, from: &File, to: &File) -> bool {
        if self.reflink == Some(false) {
            return false;
        }
        // SAFETY: FICLONE takes the source descriptor as its integer argument; both
        // descriptors are open files owned by the caller for the whole call.
        let rc = unsafe { libc::ioctl(to.as_raw_fd(), libc::FICLONE, from.as_raw_fd()) };
        let ok = rc == 0;
        if self.reflink.is_none() {
            self.reflink = Some(ok);
        }
        ok
    }
}

pub(crate) fn create_file(path: &Path) -> Result<File, SnapshotError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err("create", path))
}

fn times(meta: &Metadata) -> (TimeSpec, TimeSpec) {
    (
        TimeSpec::new(meta.atime(), meta.atime_nsec()),
        TimeSpec::new(meta.mtime(), meta.mtime_nsec()),
    )
}

/// Gives an open copy the owner, then the mode (chown clears set-id bits), then the times of
/// `meta`.
pub(crate) fn set_file_owner_mode_times(
    file: &File,
    path: &Path,
    meta: &Metadata,
) -> Result<(), SnapshotError> {
    std::os::unix::fs::fchown(file, Some(meta.uid()), Some(meta.gid()))
        .map_err(io_err("chown", path))?;
    file.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(io_err("chmod", path))?;
    let (atime, mtime) = times(meta);
    futimens(file, &atime, &mtime).map_err(|e| io_err("set the times of", path)(e.into()))
}

/// Owner and times of a path itself (a symlink is not followed).
fn set_owner_times(path: &Path, meta: &Metadata) -> Result<(), SnapshotError> {
    std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid()))
        .map_err(io_err("chown", path))?;
    set_times(path, meta)
}

/// Times of a path itself (a symlink is not followed).
fn set_times(path: &Path, meta: &Metadata) -> Result<(), SnapshotError> {
    let (atime, mtime) = times(meta);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &atime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| io_err("set the times of", path)(e.into()))
}

/// Owner, mode and times of a directory (set after its contents, which change its mtime).
fn set_owner_mode_times(dir: &Path, meta: &Metadata) -> Result<(), SnapshotError> {
    std::os::unix::fs::lchown(dir, Some(meta.uid()), Some(meta.gid()))
        .map_err(io_err("chown", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(io_err("chmod", dir))?;
    set_times(dir, meta)
}

/// Maps an I/O error to [`SnapshotError::Io`] naming the operation and the path.
pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        op,
        path: PathBuf::from(path),
        source,
    }
}

#[cfg(test)]
mod tests;
