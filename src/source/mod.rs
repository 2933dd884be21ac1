//! Desired-state sources: a directory of blueprints, or a git repository at a ref (and a path
//! inside it). Loading a source gives the validated blueprints, where they came from (with the
//! commit id for git), and a fingerprint that changes whenever the desired state does, so a
//! saved plan can tell it went stale.

pub mod git;
pub mod git_http;
pub mod watch;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use serde::{Deserialize, Serialize};

use crate::blueprint::set::{load_paths, LoadOptions, SourceSet};

/// Where a deployment's blueprint came from (recorded in the inventory).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceRef {
    /// `dir` or `git`.
    pub kind: String,
    /// The directory, or the repository URL.
    pub location: String,
    /// The blueprint file, relative to the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The git commit id, for git sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Git(#[from] git::GitError),
    #[error("{0} is not a directory: pass --dir with a directory of blueprints (or run `nemoclaw init`)")]
    NotADirectory(PathBuf),
    #[error("--path {0} escapes the repository: give a path inside it")]
    PathEscapes(PathBuf),
}

/// Where the desired state comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    Dir(PathBuf),
    Git {
        url: String,
        reference: String,
        path: Option<PathBuf>,
    },
}

/// A loaded source.
#[derive(Debug)]
pub struct Loaded {
    pub source: SourceRef,
    /// The directory the blueprints were read from.
    pub dir: PathBuf,
    /// Everything read, with diagnostics.
    pub set: SourceSet,
    /// sha256 over the blueprint and config files' names and contents (and the commit).
    pub fingerprint: String,
}

impl Loaded {
    /// The source reference recorded for one blueprint file.
    pub fn source_for(&self, file: &Path) -> SourceRef {
        let mut s = self.source.clone();
        s.file = file
            .strip_prefix(&self.dir)
            .ok()
            .map(|p| p.display().to_string())
            .or_else(|| Some(file.display().to_string()));
        s
    }
}

/// The `N` of every `vN.rhai` in the migrations dir of the blueprint read from `file`, sorted.
pub fn migration_steps(file: &Path, bp: &crate::blueprint::Blueprint) -> Vec<u32> {
    let Some(m) = &bp.migrations else {
        return Vec::new();
    };
    let dir = file.parent().unwrap_or(Path::new(".")).join(&m.dir);
    let mut steps: Vec<u32> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix('v')?.strip_suffix(".rhai")?.parse().ok())
        })
        .collect();
    steps.sort_unstable();
    steps
}

/// Loads the desired state. Git sources are fetched into `cache`.
pub fn load(spec: &SourceSpec, cache: &Path, opts: &LoadOptions) -> Result<Loaded, SourceError> {
    let (dir, mut source) = match spec {
        SourceSpec::Dir(d) => {
            if !d.is_dir() {
                return Err(SourceError::NotADirectory(d.clone()));
            }
            let abs = std::fs::canonicalize(d).unwrap_or_else(|_| d.clone());
            (
                d.clone(),
                SourceRef {
                    kind: "dir".into(),
                    location: abs.display().to_string(),
                    file: None,
                    commit: None,
                },
            )
        }
        SourceSpec::Git {
            url,
            reference,
            path,
        } => {
            let co = git::checkout(cache, url, reference)?;
            let sub = path.clone().unwrap_or_default();
            if sub.is_absolute()
                || sub
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(SourceError::PathEscapes(sub));
            }
            let dir = co.dir.join(&sub);
            if !dir.is_dir() {
                return Err(SourceError::NotADirectory(dir));
            }
            (
                dir,
                SourceRef {
                    kind: "git".into(),
                    location: git_http::redact(url),
                    file: None,
                    commit: Some(co.commit),
                },
            )
        }
    };
    let set = load_paths(std::slice::from_ref(&dir), opts);
    let fingerprint = fingerprint(&set, source.commit.as_deref());
    source.file = None;
    Ok(Loaded {
        source,
        dir,
        set,
        fingerprint,
    })
}

fn fingerprint(set: &SourceSet, commit: Option<&str>) -> String {
    let mut h = Sha256::new();
    if let Some(c) = commit {
        h.update(c.as_bytes());
    }
    let mut files: Vec<(&PathBuf, &std::sync::Arc<str>)> = set.texts.iter().collect();
    files.sort();
    for (p, text) in files {
        h.update(p.to_string_lossy().as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}
