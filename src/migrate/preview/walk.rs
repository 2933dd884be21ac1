//! Listing a tree without following symlinks: every entry below the root, keyed by its
//! relative path (sorted component by component, so a directory's entries follow it).

use std::collections::BTreeMap;
use std::fs::{self, FileType, Metadata};
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use super::{Entry, EntryKind, PreviewError};

/// One entry as `lstat` saw it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Node {
    pub kind: EntryKind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// (uid, gid).
    pub owner: (u32, u32),
    pub size: u64,
}

impl Node {
    fn of(meta: &Metadata) -> Self {
        Self {
            kind: kind_of(meta.file_type()),
            mode: meta.mode() & 0o7777,
            owner: (meta.uid(), meta.gid()),
            size: meta.len(),
        }
    }

    pub fn entry(&self, rel: &Path) -> Entry {
        Entry {
            path: display(rel),
            kind: self.kind,
            size: (self.kind == EntryKind::File).then_some(self.size),
        }
    }
}

fn kind_of(t: FileType) -> EntryKind {
    if t.is_symlink() {
        EntryKind::Symlink
    } else if t.is_dir() {
        EntryKind::Dir
    } else if t.is_file() {
        EntryKind::File
    } else {
        debug_assert!(t.is_fifo() || t.is_socket() || t.is_block_device() || t.is_char_device());
        EntryKind::Other
    }
}

/// A relative path as shown and serialised (`/`-separated; non-UTF-8 bytes replaced).
pub(super) fn display(rel: &Path) -> String {
    rel.to_string_lossy().into_owned()
}

/// Every entry below `root` (the root itself excluded), never following symlinks.
pub(super) fn tree(root: &Path) -> Result<BTreeMap<PathBuf, Node>, PreviewError> {
    let mut nodes = BTreeMap::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(dir) = pending.pop() {
        for (rel, node) in children(root, &dir)? {
            if node.kind == EntryKind::Dir {
                pending.push(rel.clone());
            }
            nodes.insert(rel, node);
        }
    }
    Ok(nodes)
}

/// The entries of `root/dir`, with paths relative to `root`.
fn children(root: &Path, dir: &Path) -> Result<Vec<(PathBuf, Node)>, PreviewError> {
    let abs = root.join(dir);
    let io = |source| PreviewError::Io {
        path: abs.clone(),
        source,
    };
    let mut out = Vec::new();
    for entry in fs::read_dir(&abs).map_err(io)? {
        let entry = entry.map_err(io)?;
        // Like lstat: DirEntry::metadata does not follow a symlink.
        let meta = entry.metadata().map_err(|source| PreviewError::Io {
            path: entry.path(),
            source,
        })?;
        out.push((dir.join(entry.file_name()), Node::of(&meta)));
    }
    Ok(out)
}
