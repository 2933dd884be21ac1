//! The few facts about the host (or the blueprint's rootfs) the spec depends on.

use std::path::{Path, PathBuf};

use crate::blueprint::types::Blueprint;

use super::SYSTEM_DIRS;

/// What a top-level system path is on the host (or in the rootfs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEntry {
    Dir,
    Symlink(String),
}

/// The few facts about the host the spec depends on, probed by [`HostView::probe`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostView {
    /// `(name, entry)` for each of [`SYSTEM_DIRS`] that exists under the system root.
    pub system: Vec<(String, HostEntry)>,
    /// The host's `/etc/ssl/certs`, when it exists.
    pub ssl_certs: Option<PathBuf>,
    /// The host's `/etc/alternatives` (Debian's symlink farm behind awk, editor, ...).
    pub alternatives: Option<PathBuf>,
}

impl HostView {
    /// Looks at `root` (the host `/` or the blueprint's rootfs) and `/etc/ssl/certs`.
    pub fn probe(root: &Path) -> HostView {
        let mut system = Vec::new();
        for name in SYSTEM_DIRS {
            let p = root.join(name);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => {
                    if let Ok(t) = std::fs::read_link(&p) {
                        system.push((
                            name.to_string(),
                            HostEntry::Symlink(t.to_string_lossy().into_owned()),
                        ));
                    }
                }
                Ok(m) if m.is_dir() => system.push((name.to_string(), HostEntry::Dir)),
                _ => {}
            }
        }
        let certs = Path::new("/etc/ssl/certs");
        let alt = Path::new("/etc/alternatives");
        HostView {
            system,
            ssl_certs: certs.is_dir().then(|| certs.to_path_buf()),
            alternatives: alt.is_dir().then(|| alt.to_path_buf()),
        }
    }
}

/// Where the system directories come from: the blueprint's `filesystem.rootfs`, or the host's `/`.
pub fn system_root(bp: &Blueprint) -> PathBuf {
    bp.filesystem
        .rootfs
        .as_deref()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}
