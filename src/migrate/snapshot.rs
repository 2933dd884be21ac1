//! Snapshots of an agent's state dir: `snapshots/<name>/<stamp>-v<N>[-checkpoint]/` holding
//! `manifest.json` (every file's path, type, mode, owner, size and sha256 or link target),
//! `state/` (the copy) and the request's attachments. The stamp is UTC, e.g.
//! `20261207T231653.123Z` (a `.1`, `.2` ... suffix keeps it unique), so names sort by age. A
//! snapshot is built in a hidden `.partial-<pid>-...` sibling, synced and renamed into place:
//! a crash leaves no half snapshot listed, and the next [`create`] removes the leftover.

mod restore;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::tree::{self, copy_tree_with, io_err, CopyOptions, Entry, EntryType};
use crate::home::{self, HomeError};

pub use restore::restore;

/// The manifest's file name inside a snapshot.
pub const MANIFEST: &str = "manifest.json";
/// The copy of the state dir inside a snapshot.
pub const STATE: &str = "state";
/// The manifest format this release writes and reads.
const FORMAT: u32 = 1;
/// Prefix of the hidden directory a snapshot is built in (and removed through).
const PARTIAL: &str = ".partial-";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("{0}: the name is not UTF-8 (a snapshot cannot record it)")]
    NotUtf8(PathBuf),
    #[error("{path}: not a valid snapshot manifest")]
    Manifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: manifest format {found} is not supported (this release reads {FORMAT})")]
    Format { path: PathBuf, found: u32 },
    #[error("snapshot file {path} {reason}: the snapshot is corrupt, refusing to restore it")]
    Corrupt { path: PathBuf, reason: String },
    #[error("no snapshot {id} in {dir}")]
    NotFound { dir: PathBuf, id: String },
    #[error("{id} matches several snapshots in {dir}: {}", .matches.join(", "))]
    Ambiguous {
        dir: PathBuf,
        id: String,
        matches: Vec<String>,
    },
    #[error("attachment name {0:?} must be a plain file name other than {MANIFEST} and {STATE}")]
    AttachmentName(String),
}

/// Why a snapshot was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Before the migrations of an upgrade.
    Upgrade,
    /// A periodic checkpoint of a running agent.
    Checkpoint,
}

/// What to snapshot.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The blueprint version the state belongs to.
    pub version: u32,
    pub kind: Kind,
    /// Extra files stored beside `state/` in the snapshot (e.g. "blueprint.yaml", "deployed.json").
    pub attachments: &'a [(&'a str, &'a [u8])],
    /// Copy SQLite databases through the online backup API (checkpoints of a running agent).
    pub sqlite_backup: bool,
}

/// A snapshot on disk (`nemoclaw snapshots --json` prints these, camelCase like every other
/// JSON document nemoclaw prints).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Info {
    /// The directory name, e.g. `20261207T231653.123Z-v3`.
    pub id: String,
    pub path: PathBuf,
    pub version: u32,
    pub kind: Kind,
    /// Unix seconds.
    pub created_at: u64,
    /// Regular files in the state copy.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    version: u32,
    kind: Kind,
    created_at: u64,
    /// Mode and owner of the state dir itself.
    root: Root,
    /// Attachment name → hex sha256.
    attachments: BTreeMap<String, String>,
    /// Every entry below the state dir.
    files: Vec<Entry>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Root {
    mode: u32,
    uid: u32,
    gid: u32,
}

/// Snapshots `state_dir` into `snapshots_dir` (created 0700 if missing).
pub fn create(
    snapshots_dir: &Path,
    state_dir: &Path,
    req: &Request<'_>,
) -> Result<Info, SnapshotError> {
    check_attachment_names(req.attachments)?;
    home::create_dir_private(snapshots_dir)?;
    remove_stale_partials(snapshots_dir)?;
    let now = SystemTime::now();
    let partial = snapshots_dir.join(format!("{PARTIAL}{}-{}", std::process::id(), stamp(now)));
    let result = build(&partial, state_dir, req, now)
        .and_then(|manifest| publish(snapshots_dir, &partial, now, manifest));
    if result.is_err() {
        let _ = fs::remove_dir_all(&partial);
    }
    result
}

/// The snapshots in `snapshots_dir`, oldest first (none if it does not exist).
pub fn list(snapshots_dir: &Path) -> Result<Vec<Info>, SnapshotError> {
    let entries = match fs::read_dir(snapshots_dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        other => other.map_err(io_err("list", snapshots_dir))?,
    };
    let mut infos = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("list", snapshots_dir))?;
        let Ok(id) = entry.file_name().into_string() else {
            continue;
        };
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if id.starts_with('.') || !is_dir {
            continue;
        }
        let manifest = read_manifest(&entry.path())?;
        infos.push(info(id, entry.path(), &manifest));
    }
    infos.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(infos)
}

/// The snapshot whose id is `id_or_prefix`, or the only one it starts.
pub fn find(snapshots_dir: &Path, id_or_prefix: &str) -> Result<Info, SnapshotError> {
    let mut matches: Vec<Info> = list(snapshots_dir)?
        .into_iter()
        .filter(|i| i.id.starts_with(id_or_prefix))
        .collect();
    if let Some(exact) = matches.iter().position(|i| i.id == id_or_prefix) {
        return Ok(matches.swap_remove(exact));
    }
    match matches.len() {
        1 => Ok(matches.swap_remove(0)),
        0 => Err(SnapshotError::NotFound {
            dir: snapshots_dir.to_path_buf(),
            id: id_or_prefix.to_string(),
        }),
        _ => Err(SnapshotError::Ambiguous {
            dir: snapshots_dir.to_path_buf(),
            id: id_or_prefix.to_string(),
            matches: matches.into_iter().map(|i| i.id).collect(),
        }),
    }
}

/// The contents of the attachment `name` of a snapshot (None if it has none by that name).
pub fn attachment(info: &Info, name: &str) -> Result<Option<Vec<u8>>, SnapshotError> {
    check_attachment_names(&[(name, &[])])?;
    let path = info.path.join(name);
    match fs::read(&path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", &path)(e)),
    }
}

/// Removes all but the newest `keep` snapshots of `kind`; returns the ids it removed.
pub fn prune(snapshots_dir: &Path, kind: Kind, keep: usize) -> Result<Vec<String>, SnapshotError> {
    let of_kind: Vec<Info> = list(snapshots_dir)?
        .into_iter()
        .filter(|i| i.kind == kind)
        .collect();
    let excess = of_kind.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for old in of_kind.into_iter().take(excess) {
        remove_snapshot(snapshots_dir, &old)?;
        removed.push(old.id);
    }
    Ok(removed)
}

/// Renames a snapshot to a partial first, so a crash while removing it leaves nothing listed.
fn remove_snapshot(snapshots_dir: &Path, info: &Info) -> Result<(), SnapshotError> {
    let doomed = snapshots_dir.join(format!("{PARTIAL}{}-{}", std::process::id(), info.id));
    fs::rename(&info.path, &doomed).map_err(io_err("remove", &info.path))?;
    fs::remove_dir_all(&doomed).map_err(io_err("remove", &doomed))
}

fn check_attachment_names(attachments: &[(&str, &[u8])]) -> Result<(), SnapshotError> {
    for (name, _) in attachments {
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && !name.contains('/')
            && !name.contains('\0');
        if !plain || *name == MANIFEST || *name == STATE {
            return Err(SnapshotError::AttachmentName((*name).to_string()));
        }
    }
    Ok(())
}

/// Removes `.partial-<pid>-...` directories whose process is gone (or whose name has no pid).
fn remove_stale_partials(snapshots_dir: &Path) -> Result<(), SnapshotError> {
    let entries = fs::read_dir(snapshots_dir).map_err(io_err("list", snapshots_dir))?;
    for entry in entries {
        let entry = entry.map_err(io_err("list", snapshots_dir))?;
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PARTIAL)) else {
            continue;
        };
        if !owner_alive(rest) {
            let path = entry.path();
            fs::remove_dir_all(&path).map_err(io_err("remove", &path))?;
        }
    }
    Ok(())
}

/// Whether the `<pid>-` that starts `rest` names a live process.
pub(crate) fn owner_alive(rest: &str) -> bool {
    let pid = rest.split('-').next().and_then(|p| p.parse::<i32>().ok());
    pid.is_some_and(|pid| {
        pid > 0
            && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) != Err(Errno::ESRCH)
    })
}

/// Builds the snapshot in `partial`: the state copy, the attachments, the manifest, synced.
fn build(
    partial: &Path,
    state_dir: &Path,
    req: &Request<'_>,
    now: SystemTime,
) -> Result<Manifest, SnapshotError> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(partial)
        .map_err(io_err("create", partial))?;
    let root = fs::symlink_metadata(state_dir).map_err(io_err("inspect", state_dir))?;
    let options = CopyOptions {
        hash: true,
        sqlite_backup: req.sqlite_backup,
    };
    let copied = copy_tree_with(state_dir, &partial.join(STATE), options)?;
    let mut attachments = BTreeMap::new();
    for (name, bytes) in req.attachments {
        write_file(&partial.join(name), bytes)?;
        attachments.insert((*name).to_string(), tree::hex(&Sha256::digest(bytes)));
    }
    let manifest = Manifest {
        format: FORMAT,
        version: req.version,
        kind: req.kind,
        created_at: now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        root: Root {
            mode: root.mode() & 0o7777,
            uid: root.uid(),
            gid: root.gid(),
        },
        attachments,
        files: copied.entries,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|source| SnapshotError::Manifest {
        path: partial.join(MANIFEST),
        source,
    })?;
    write_file(&partial.join(MANIFEST), &json)?;
    sync_filesystem(partial)?;
    Ok(manifest)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
    let mut f = tree::create_file(path)?;
    f.write_all(bytes).map_err(io_err("write", path))
}

/// Flushes everything written under `dir` to disk (one syncfs instead of a fsync per file).
pub(crate) fn sync_filesystem(dir: &Path) -> Result<(), SnapshotError> {
    let f = File::open(dir).map_err(io_err("open", dir))?;
    nix::unistd::syncfs(&f).map_err(|e| io_err("sync", dir)(e.into()))
}

/// Renames the built snapshot to its final name (never over another) and syncs the directory.
fn publish(
    snapshots_dir: &Path,
    partial: &Path,
    now: SystemTime,
    manifest: Manifest,
) -> Result<Info, SnapshotError> {
    let suffix = match manifest.kind {
        Kind::Upgrade => String::new(),
        Kind::Checkpoint => "-checkpoint".to_string(),
    };
    let stamp = stamp(now);
    loop {
        // A name taken since the listing (EEXIST) is listed on the next turn.
        let id = format!(
            "{}-v{}{suffix}",
            unique_stamp(snapshots_dir, &stamp)?,
            manifest.version
        );
        let path = snapshots_dir.join(&id);
        match renameat2(
            AT_FDCWD,
            partial,
            AT_FDCWD,
            &path,
            RenameFlags::RENAME_NOREPLACE,
        ) {
            Err(Errno::EEXIST) => continue,
            Err(e) => return Err(io_err("rename into place", &path)(e.into())),
            Ok(()) => {
                sync_dir(snapshots_dir)?;
                return Ok(info(id, path, &manifest));
            }
        }
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), SnapshotError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync", dir))
}

/// `stamp`, or `stamp.K` for the smallest K that no snapshot in `dir` uses yet.
fn unique_stamp(dir: &Path, stamp: &str) -> Result<String, SnapshotError> {
    let names: Vec<String> = fs::read_dir(dir)
        .map_err(io_err("list", dir))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    let taken = |s: &str| names.iter().any(|n| n.starts_with(&format!("{s}-")));
    if !taken(stamp) {
        return Ok(stamp.to_string());
    }
    let free = (1u64..).map(|k| format!("{stamp}.{k}")).find(|s| !taken(s));
    Ok(free.unwrap_or_default())
}

/// `20261207T231653.123Z`: RFC 3339 in UTC with milliseconds, without `-` and `:`.
fn stamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t)
        .to_string()
        .replace(['-', ':'], "")
}

fn read_manifest(snapshot: &Path) -> Result<Manifest, SnapshotError> {
    let path = snapshot.join(MANIFEST);
    let bytes = fs::read(&path).map_err(io_err("read", &path))?;
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|source| SnapshotError::Manifest {
            path: path.clone(),
            source,
        })?;
    if manifest.format != FORMAT {
        return Err(SnapshotError::Format {
            path,
            found: manifest.format,
        });
    }
    Ok(manifest)
}

fn info(id: String, path: PathBuf, manifest: &Manifest) -> Info {
    let files = manifest.files.iter().filter(|e| e.kind == EntryType::File);
    Info {
        id,
        path,
        version: manifest.version,
        kind: manifest.kind,
        created_at: manifest.created_at,
        files: files.clone().count() as u64,
        bytes: files.map(|e| e.size).sum(),
    }
}

#[cfg(test)]
mod tests;
