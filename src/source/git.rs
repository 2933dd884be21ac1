//! Git sources: a repository URL (https, carried by [`super::git_http`], or file://) and a ref
//! (branch, tag or commit), fetched with git2 (vendored libgit2) into the home's `cache/git/`,
//! checked out detached at the resolved commit. The commit id travels with every deployment.

use std::path::{Path, PathBuf};
use std::time::Duration;

use git2::{build::CheckoutBuilder, FetchOptions, Oid, Repository};
use sha2::{Digest, Sha256};

use crate::home::{create_dir_private, FileLock, HomeError};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error("git {url}: {what}")]
    Git {
        url: String,
        what: &'static str,
        #[source]
        source: git2::Error,
    },
    #[error("git {url}")]
    Setup {
        url: String,
        #[source]
        source: super::git_http::PreflightError,
    },
    #[error(
        "git {url}: ref `{reference}` is neither a branch, a tag nor a commit of the repository"
    )]
    UnknownRef { url: String, reference: String },
}

/// A checkout of a git source at one commit.
#[derive(Debug, Clone)]
pub struct Checkout {
    /// The work tree (the repository root).
    pub dir: PathBuf,
    /// The full commit id.
    pub commit: String,
}

/// The cache directory of a repository URL: `cache/git/<sha256 of the URL, 16 hex>`.
pub fn cache_dir(cache: &Path, url: &str) -> PathBuf {
    let digest = Sha256::digest(url.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    cache.join("git").join(hex)
}

/// Fetches `url` and checks out `reference` (a branch, tag or commit id). Concurrent callers for
/// the same URL are serialised by a lock beside the cache.
pub fn checkout(cache: &Path, url: &str, reference: &str) -> Result<Checkout, GitError> {
    let base = cache_dir(cache, url);
    create_dir_private(&base)?;
    let _lock = FileLock::acquire(
        &base.join("fetch.lock"),
        "nemoclaw git fetch",
        Duration::from_secs(120),
    )?;
    let dir = base.join("repo");
    super::git_http::preflight(url).map_err(|source| GitError::Setup {
        url: super::git_http::redact(url),
        source,
    })?;
    super::git_http::register().map_err(|source| GitError::Git {
        url: super::git_http::redact(url),
        what: "cannot set up https",
        source,
    })?;
    let err = |what: &'static str| {
        move |source: git2::Error| GitError::Git {
            url: super::git_http::redact(url),
            what,
            source,
        }
    };
    let repo = match Repository::open(&dir) {
        Ok(r) => r,
        Err(_) => {
            let _ = std::fs::remove_dir_all(&dir);
            Repository::init(&dir).map_err(err("cannot create the cache repository"))?
        }
    };
    let mut remote = repo
        .remote_anonymous(url)
        .map_err(err("bad repository URL"))?;
    let mut opts = FetchOptions::new();
    opts.download_tags(git2::AutotagOption::All);
    let refspecs = [
        "+refs/heads/*:refs/remotes/origin/*",
        "+refs/tags/*:refs/tags/*",
    ];
    // The reflog gets the URL without credentials (libgit2 would write the URL as given).
    let reflog = format!("nemoclaw fetch {}", super::git_http::redact(url));
    remote
        .fetch(&refspecs, Some(&mut opts), Some(&reflog))
        .map_err(err("fetch failed"))?;
    let oid = resolve(&repo, reference).ok_or_else(|| GitError::UnknownRef {
        url: super::git_http::redact(url),
        reference: reference.to_string(),
    })?;
    let commit = repo.find_commit(oid).map_err(err("not a commit"))?;
    repo.checkout_tree(
        commit.as_object(),
        Some(CheckoutBuilder::new().force().remove_untracked(true)),
    )
    .map_err(err("checkout failed"))?;
    repo.set_head_detached(oid)
        .map_err(err("checkout failed"))?;
    Ok(Checkout {
        dir,
        commit: oid.to_string(),
    })
}

fn resolve(repo: &Repository, reference: &str) -> Option<Oid> {
    let candidates = [
        format!("refs/remotes/origin/{reference}"),
        format!("refs/tags/{reference}"),
        reference.to_string(),
    ];
    for name in &candidates {
        if let Ok(obj) = repo.revparse_single(name) {
            if let Ok(c) = obj.peel_to_commit() {
                return Some(c.id());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit_file(repo: &Repository, path: &str, text: &str, msg: &str) -> Oid {
        let root = repo.workdir().unwrap();
        std::fs::create_dir_all(root.join(path).parent().unwrap()).unwrap();
        std::fs::write(root.join(path), text).unwrap();
        let mut idx = repo.index().unwrap();
        idx.add_path(Path::new(path)).unwrap();
        idx.write().unwrap();
        let tree = repo.find_tree(idx.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        repo.commit(Some("HEAD"), &sig, &sig, msg, &tree, &parents)
            .unwrap()
    }

    #[test]
    fn checks_out_branches_tags_and_commits_from_file_urls() {
        let dir = tempfile::tempdir().unwrap();
        let upstream = Repository::init(dir.path().join("up")).unwrap();
        let first = commit_file(&upstream, "bp/a.yaml", "one\n", "first");
        upstream
            .tag_lightweight("v1", &upstream.find_object(first, None).unwrap(), false)
            .unwrap();
        let second = commit_file(&upstream, "bp/a.yaml", "two\n", "second");
        let branch = upstream.head().unwrap().shorthand().unwrap().to_string();
        let url = format!("file://{}", dir.path().join("up").display());
        let cache = dir.path().join("cache");

        let co = checkout(&cache, &url, &branch).unwrap();
        assert_eq!(co.commit, second.to_string());
        assert_eq!(
            std::fs::read_to_string(co.dir.join("bp/a.yaml")).unwrap(),
            "two\n"
        );

        let co = checkout(&cache, &url, "v1").unwrap();
        assert_eq!(co.commit, first.to_string());
        assert_eq!(
            std::fs::read_to_string(co.dir.join("bp/a.yaml")).unwrap(),
            "one\n"
        );

        let co = checkout(&cache, &url, &second.to_string()).unwrap();
        assert_eq!(
            std::fs::read_to_string(co.dir.join("bp/a.yaml")).unwrap(),
            "two\n"
        );

        // A new commit upstream is picked up by the next checkout of the branch.
        let third = commit_file(&upstream, "bp/b.yaml", "three\n", "third");
        let co = checkout(&cache, &url, &branch).unwrap();
        assert_eq!(co.commit, third.to_string());
        assert!(co.dir.join("bp/b.yaml").is_file());

        let e = checkout(&cache, &url, "no-such-ref").unwrap_err();
        assert!(
            e.to_string()
                .contains("neither a branch, a tag nor a commit"),
            "{e}"
        );
    }
}
