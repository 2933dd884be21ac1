//! Restoring a snapshot: its tree is copied beside the state dir into a hidden
//! `.<name>.restore-<pid>` sibling while every entry is checked against the manifest (a
//! corrupted snapshot is refused before the state dir is touched), then swapped in with
//! renameat2(RENAME_EXCHANGE) and the old tree removed.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};

use super::{
    owner_alive, read_manifest, sync_dir, sync_filesystem, Info, Manifest, Root, SnapshotError,
    STATE,
};
use crate::migrate::tree::{copy_tree_with, io_err, CopyOptions, Entry};

/// Verifies the manifest hashes, then replaces `state_dir` with the snapshot's tree byte for
/// byte (built beside it, swapped in with renameat2(RENAME_EXCHANGE), old tree removed). The
/// state dir's own mode and owner come from the manifest.
pub fn restore(info: &Info, state_dir: &Path) -> Result<(), SnapshotError> {
    let manifest = read_manifest(&info.path)?;
    let (parent, name) = split(state_dir)?;
    remove_stale_restores(parent, name)?;
    let fresh = parent.join(format!(".{name}.restore-{}", std::process::id()));
    let swapped = build(info, &manifest, &fresh).and_then(|()| swap_in(&fresh, state_dir));
    match swapped {
        Err(e) => {
            let _ = fs::remove_dir_all(&fresh);
            Err(e)
        }
        Ok(false) => Ok(()),
        Ok(true) => {
            if let Err(e) = fs::remove_dir_all(&fresh) {
                // The state is restored; the next restore removes the leftover.
                tracing::warn!(path = %fresh.display(), error = %e, "cannot remove the replaced state");
            }
            Ok(())
        }
    }
}

fn split(state_dir: &Path) -> Result<(&Path, &str), SnapshotError> {
    let parent = state_dir.parent().filter(|p| !p.as_os_str().is_empty());
    let name = state_dir.file_name().and_then(|n| n.to_str());
    match (parent, name) {
        (Some(parent), Some(name)) => Ok((parent, name)),
        _ => Err(SnapshotError::NotUtf8(state_dir.to_path_buf())),
    }
}

/// Removes `.<name>.restore-<pid>` siblings left by a restore whose process is gone.
fn remove_stale_restores(parent: &Path, name: &str) -> Result<(), SnapshotError> {
    let prefix = format!(".{name}.restore-");
    let entries = match fs::read_dir(parent) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other.map_err(io_err("list", parent))?,
    };
    for entry in entries {
        let entry = entry.map_err(io_err("list", parent))?;
        let file_name = entry.file_name();
        let Some(rest) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        if !owner_alive(rest) {
            let path = entry.path();
            fs::remove_dir_all(&path).map_err(io_err("remove", &path))?;
        }
    }
    Ok(())
}

/// Copies the snapshot's tree to `fresh`, checking it against the manifest, and gives
/// `fresh` the recorded mode and owner; synced.
fn build(info: &Info, manifest: &Manifest, fresh: &Path) -> Result<(), SnapshotError> {
    let tree = info.path.join(STATE);
    let options = CopyOptions {
        hash: true,
        sqlite_backup: false,
    };
    let copied = copy_tree_with(&tree, fresh, options)?;
    check(&tree, &copied.entries, &manifest.files)?;
    set_root(fresh, manifest.root)?;
    sync_filesystem(fresh)
}

/// Every entry read from the snapshot equals the manifest's, and none is missing.
fn check(tree: &Path, read: &[Entry], recorded: &[Entry]) -> Result<(), SnapshotError> {
    let mut expected: HashMap<&str, &Entry> =
        recorded.iter().map(|e| (e.path.as_str(), e)).collect();
    let corrupt = |rel: &str, reason: String| SnapshotError::Corrupt {
        path: tree.join(rel),
        reason,
    };
    for entry in read {
        let Some(want) = expected.remove(entry.path.as_str()) else {
            return Err(corrupt(&entry.path, "is not in the manifest".into()));
        };
        if let Some(reason) = difference(want, entry) {
            return Err(corrupt(&entry.path, reason));
        }
    }
    match expected.keys().min() {
        Some(missing) => Err(corrupt(missing, "is missing".into())),
        None => Ok(()),
    }
}

/// How `found` differs from what the manifest recorded (None if it does not).
fn difference(want: &Entry, found: &Entry) -> Option<String> {
    if want.kind != found.kind {
        return Some(format!(
            "is a {:?}, the manifest says {:?}",
            found.kind, want.kind
        ));
    }
    if (want.mode, want.uid, want.gid) != (found.mode, found.uid, found.gid) {
        return Some(format!(
            "has mode {:o} owner {}:{}, the manifest says {:o} {}:{}",
            found.mode, found.uid, found.gid, want.mode, want.uid, want.gid
        ));
    }
    if want.size != found.size || want.sha256 != found.sha256 {
        return Some(format!(
            "has sha256 {} ({} bytes), the manifest says {} ({} bytes)",
            found.sha256.as_deref().unwrap_or("-"),
            found.size,
            want.sha256.as_deref().unwrap_or("-"),
            want.size
        ));
    }
    if want.target != found.target {
        return Some(format!(
            "links to {:?}, the manifest says {:?}",
            found.target, want.target
        ));
    }
    None
}

fn set_root(dir: &Path, root: Root) -> Result<(), SnapshotError> {
    std::os::unix::fs::lchown(dir, Some(root.uid), Some(root.gid)).map_err(io_err("chown", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(root.mode)).map_err(io_err("chmod", dir))
}

/// Puts `fresh` in the place of `state_dir`: true when an old tree was swapped out to `fresh`.
fn swap_in(fresh: &Path, state_dir: &Path) -> Result<bool, SnapshotError> {
    let exists = match fs::symlink_metadata(state_dir) {
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(io_err("inspect", state_dir)(e)),
    };
    let flags = if exists {
        RenameFlags::RENAME_EXCHANGE
    } else {
        RenameFlags::RENAME_NOREPLACE
    };
    renameat2(AT_FDCWD, fresh, AT_FDCWD, state_dir, flags)
        .map_err(|e| io_err("swap in", state_dir)(e.into()))?;
    if let Some(parent) = state_dir.parent() {
        sync_dir(parent)?;
    }
    Ok(exists)
}
