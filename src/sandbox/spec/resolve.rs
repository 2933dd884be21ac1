//! Where a path inside the sandbox lives on the host, and which host file its command runs.

use std::path::{Path, PathBuf};

use super::{MountKind, MountSpec, SandboxSpec, SANDBOX_PATH};

impl SandboxSpec {
    /// Maps a path inside the sandbox to the host path backing it, through the bind mounts
    /// (longest target prefix wins). `None` when the path lies on a tmpfs or nowhere.
    pub fn host_path_of(&self, inside: &str) -> Option<PathBuf> {
        let mut best: Option<(&MountSpec, usize)> = None;
        for m in &self.mounts {
            let t = m.target.as_str();
            let hit = inside == t
                || (inside.starts_with(t) && inside.as_bytes().get(t.len()) == Some(&b'/'));
            if hit && best.is_none_or(|(_, l)| t.len() > l) {
                best = Some((m, t.len()));
            }
        }
        match best?.0 {
            MountSpec {
                kind: MountKind::Bind { source, .. },
                target,
                ..
            } => {
                let rest = inside[target.len()..].trim_start_matches('/');
                Some(if rest.is_empty() {
                    source.clone()
                } else {
                    source.join(rest)
                })
            }
            _ => None,
        }
    }

    /// Resolves the command's `argv[0]` the way execvp will inside the sandbox (through the
    /// symlinked system dirs and PATH) and returns the host path backing it, if any `exists`.
    pub fn resolve_command(&self, exists: impl Fn(&Path) -> bool) -> Option<PathBuf> {
        let arg0 = self.argv.first()?;
        let candidates: Vec<String> = if arg0.contains('/') {
            let abs = if arg0.starts_with('/') {
                arg0.clone()
            } else {
                format!("{}/{arg0}", self.workdir)
            };
            vec![abs]
        } else {
            let path = self
                .env
                .get("PATH")
                .map(String::as_str)
                .unwrap_or(SANDBOX_PATH);
            path.split(':')
                .filter(|d| d.starts_with('/'))
                .map(|d| format!("{}/{arg0}", d.trim_end_matches('/')))
                .collect()
        };
        candidates.iter().find_map(|c| {
            let inside = self.follow_root_symlinks(c);
            self.host_path_of(&inside).filter(|h| exists(h))
        })
    }

    /// Rewrites a leading component that is one of the root's symlinks (`/bin` -> `/usr/bin`).
    fn follow_root_symlinks(&self, inside: &str) -> String {
        for (link, target) in &self.symlinks {
            if let Some(rest) = inside.strip_prefix(link.as_str()) {
                if rest.starts_with('/') {
                    let t = if target.starts_with('/') {
                        target.clone()
                    } else {
                        format!("/{target}")
                    };
                    return format!("{t}{rest}");
                }
            }
        }
        inside.to_string()
    }
}
