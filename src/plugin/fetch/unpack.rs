//! Unpacks an npm tarball (`.tgz`) into a directory, refusing anything that could land outside
//! it. The first path component (`package/` in every tarball `npm pack` makes) is stripped, as
//! npm does. Refused: `..` anywhere, absolute paths, device files and FIFOs, a symlink whose
//! target is absolute or climbs above the directory (or climbs after descending, `a/../..`,
//! which a symlink in `a` could turn into an escape), a hard link to anything but a file
//! already unpacked, and any entry whose parent path passes through a symlink.
//!
//! Everything is unpacked into a staging directory inside the target and moved into place only
//! when the whole archive has passed, so a refused archive leaves the target empty (or absent,
//! when it did not exist before).

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

/// The permission bits kept from a file's mode: its execute bits; files are always rw-r--r--.
const FILE_MODE_KEPT: u32 = 0o755;
const FILE_MODE_MIN: u32 = 0o644;
const STAGING_PREFIX: &str = ".nemoclaw-unpack-";

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("{}: not an empty directory (the package is unpacked only into an empty or new one)", .0.display())]
    NotEmpty(PathBuf),
    #[error("the tarball's entry {entry:?} is refused: {why}")]
    Refused { entry: String, why: &'static str },
    #[error("reading the tarball")]
    Read(#[source] io::Error),
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn refused(entry: &Path, why: &'static str) -> UnpackError {
    UnpackError::Refused {
        entry: entry.display().to_string(),
        why,
    }
}

/// Unpacks the gzipped tarball `tgz` into `dir` (created if absent, else it must be empty);
/// returns how many files and links it holds.
pub fn unpack(tgz: impl Read, dir: &Path) -> Result<usize, UnpackError> {
    let created = prepare(dir)?;
    let staging = tempfile::Builder::new()
        .prefix(STAGING_PREFIX)
        .tempdir_in(dir)
        .map_err(io_at(dir))?;
    let outcome = extract(tgz, staging.path()).and_then(|n| {
        move_children(staging.path(), dir)?;
        Ok(n)
    });
    drop(staging);
    if outcome.is_err() && created {
        let _ = fs::remove_dir(dir);
    }
    outcome
}

/// Creates `dir` if absent (true) or checks it is an empty directory (false).
fn prepare(dir: &Path) -> Result<bool, UnpackError> {
    match fs::read_dir(dir).map(|mut entries| entries.next().is_none()) {
        Ok(true) => Ok(false),
        Ok(false) => Err(UnpackError::NotEmpty(dir.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(io_at(dir))?;
            Ok(true)
        }
        Err(e) => Err(io_at(dir)(e)),
    }
}

fn move_children(from: &Path, to: &Path) -> Result<(), UnpackError> {
    for entry in fs::read_dir(from).map_err(io_at(from))? {
        let entry = entry.map_err(io_at(from))?;
        let dest = to.join(entry.file_name());
        fs::rename(entry.path(), &dest).map_err(io_at(&dest))?;
    }
    Ok(())
}

fn extract(tgz: impl Read, root: &Path) -> Result<usize, UnpackError> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tgz));
    let mut count = 0;
    for entry in archive.entries().map_err(UnpackError::Read)? {
        let mut entry = entry.map_err(UnpackError::Read)?;
        let raw = entry.path().map_err(UnpackError::Read)?.into_owned();
        let Some(rel) = inside(&raw)? else {
            continue;
        };
        if place(&mut entry, root, &raw, &rel)? {
            count += 1;
        }
    }
    Ok(count)
}

/// Writes one entry at `root/rel`; true for a file or link, false for a directory or a header.
fn place<R: Read>(
    entry: &mut tar::Entry<R>,
    root: &Path,
    raw: &Path,
    rel: &Path,
) -> Result<bool, UnpackError> {
    match entry.header().entry_type() {
        EntryType::Regular | EntryType::Continuous => {
            let mode = entry.header().mode().map_err(UnpackError::Read)?;
            write_file(entry, root, raw, rel, mode)?;
        }
        EntryType::Directory => {
            real_dirs(root, raw, rel)?;
            return Ok(false);
        }
        EntryType::Symlink => {
            let target = link_name(entry, raw)?;
            check_symlink(raw, rel, &target)?;
            let at = make_room(root, raw, rel)?;
            std::os::unix::fs::symlink(&target, &at).map_err(io_at(&at))?;
        }
        EntryType::Link => {
            let target = link_name(entry, raw)?;
            hard_link(root, raw, rel, &target)?;
        }
        EntryType::XGlobalHeader
        | EntryType::XHeader
        | EntryType::GNULongName
        | EntryType::GNULongLink => return Ok(false),
        _ => return Err(refused(raw, "a device file, FIFO or other special entry")),
    }
    Ok(true)
}

/// The path inside the directory: `raw` without its first component; `None` for that
/// component itself. `..`, a root or a prefix anywhere is refused.
fn inside(raw: &Path) -> Result<Option<PathBuf>, UnpackError> {
    let mut parts = raw.components();
    match parts.next() {
        Some(Component::Normal(_)) => {}
        Some(Component::CurDir) => return inside(parts.as_path()),
        None => return Ok(None),
        Some(_) => return Err(refused(raw, "an absolute path or `..`")),
    }
    let mut rel = PathBuf::new();
    for c in parts {
        match c {
            Component::Normal(n) => rel.push(n),
            Component::CurDir => {}
            _ => return Err(refused(raw, "an absolute path or `..`")),
        }
    }
    Ok((!rel.as_os_str().is_empty()).then_some(rel))
}

fn link_name<R: Read>(entry: &tar::Entry<R>, raw: &Path) -> Result<PathBuf, UnpackError> {
    entry
        .link_name()
        .map_err(UnpackError::Read)?
        .map(std::borrow::Cow::into_owned)
        .ok_or_else(|| refused(raw, "a link without a target"))
}

/// A symlink at `rel` may point to `(..)*(name)*` relative to its own directory, never above
/// the root.
fn check_symlink(raw: &Path, rel: &Path, target: &Path) -> Result<(), UnpackError> {
    let mut depth = rel.components().count() - 1;
    let mut descended = false;
    for c in target.components() {
        match c {
            Component::Normal(_) => {
                depth += 1;
                descended = true;
            }
            Component::CurDir => {}
            Component::ParentDir if depth > 0 && !descended => depth -= 1,
            _ => return Err(refused(raw, "a symlink that leaves the directory")),
        }
    }
    Ok(())
}

fn hard_link(root: &Path, raw: &Path, rel: &Path, target: &Path) -> Result<(), UnpackError> {
    let Some(target_rel) = inside(target)? else {
        return Err(refused(raw, "a hard link to the package directory"));
    };
    real_dirs(root, raw, target_rel.parent().unwrap_or(Path::new("")))?;
    let from = root.join(&target_rel);
    let is_file = fs::symlink_metadata(&from).is_ok_and(|m| m.is_file());
    if !is_file {
        return Err(refused(
            raw,
            "a hard link to something other than an unpacked file",
        ));
    }
    let at = make_room(root, raw, rel)?;
    fs::hard_link(&from, &at).map_err(io_at(&at))
}

fn write_file<R: Read>(
    entry: &mut tar::Entry<R>,
    root: &Path,
    raw: &Path,
    rel: &Path,
    mode: u32,
) -> Result<(), UnpackError> {
    let at = make_room(root, raw, rel)?;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode((mode & FILE_MODE_KEPT) | FILE_MODE_MIN)
        .open(&at)
        .map_err(io_at(&at))?;
    io::copy(entry, &mut file).map_err(UnpackError::Read)?;
    Ok(())
}

/// Makes the parents of `root/rel` real directories and removes a file or link already at
/// `rel` (a later entry replaces an earlier one, as tar does); returns the path.
fn make_room(root: &Path, raw: &Path, rel: &Path) -> Result<PathBuf, UnpackError> {
    real_dirs(root, raw, rel.parent().unwrap_or(Path::new("")))?;
    let at = root.join(rel);
    match fs::symlink_metadata(&at) {
        Ok(m) if m.is_dir() => Err(refused(raw, "a file over a directory")),
        Ok(_) => fs::remove_file(&at).map_err(io_at(&at)).map(|()| at),
        Err(_) => Ok(at),
    }
}

/// Creates `root/rel` and every directory above it, refusing a path through a symlink or a file.
fn real_dirs(root: &Path, raw: &Path, rel: &Path) -> Result<(), UnpackError> {
    let mut at = root.to_path_buf();
    for c in rel.components() {
        at.push(c);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(refused(raw, "a path through a symlink"))
            }
            Ok(_) => return Err(refused(raw, "a path through a file")),
            Err(_) => fs::create_dir(&at).map_err(io_at(&at))?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_lose_their_first_component_and_may_not_climb() {
        let ok = |p: &str| inside(Path::new(p)).unwrap();
        assert_eq!(ok("package/bin/node"), Some(PathBuf::from("bin/node")));
        assert_eq!(ok("./package/./a"), Some(PathBuf::from("a")));
        assert_eq!(ok("node-v24/a"), Some(PathBuf::from("a")));
        assert_eq!(ok("package/"), None);
        for bad in [
            "package/../evil",
            "/etc/passwd",
            "../x",
            "package/a/../../b",
        ] {
            assert!(inside(Path::new(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn symlinks_stay_below_the_root() {
        let check = |rel: &str, target: &str| {
            check_symlink(Path::new(rel), Path::new(rel), Path::new(target)).is_ok()
        };
        assert!(check("bin/npm", "../lib/node_modules/npm/bin/npm-cli.js"));
        assert!(check("a", "b/c"));
        assert!(check("a/b/c", "../../d"));
        assert!(!check("a", ".."));
        assert!(!check("a/b", "../../x"));
        assert!(!check("a", "/etc/passwd"));
        assert!(
            !check("a/b", "x/../.."),
            "climbing after descending is refused"
        );
    }
}
