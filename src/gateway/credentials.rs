//! The keys the gateway injects: read from the environment of the nemoclaw process or from
//! 0600 files under `$NEMOCLAW_HOME/credentials/`, held in memory only.
//!
//! A [`Secret`] never prints: its `Debug` is `<redacted>` and it has no `Display`, so a key
//! cannot reach a log line, an error or a status by accident. Errors name the variable or file,
//! never the value.

use std::collections::HashMap;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::blueprint::credential::{CredentialRef, ReferenceError};
use crate::blueprint::Inference;

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("backend `{backend}`: environment variable {name} is not set (export it in the environment of the nemoclaw process, or use {{file: NAME}} with $NEMOCLAW_HOME/credentials/NAME)")]
    MissingEnv { backend: String, name: String },
    #[error("backend `{backend}`: environment variable {name} is empty")]
    EmptyEnv { backend: String, name: String },
    #[error("backend `{backend}`: cannot read credentials file {} (create it with mode 0600)", path.display())]
    MissingFile {
        backend: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("backend `{backend}`: credentials file {} has mode {mode:o}; it must be readable by its owner only: chmod 600 {}", path.display(), path.display())]
    FileMode {
        backend: String,
        path: PathBuf,
        mode: u32,
    },
    #[error("backend `{backend}`: credentials file {} is empty", path.display())]
    EmptyFile { backend: String, path: PathBuf },
    #[error("backend `{backend}`")]
    BadReference {
        backend: String,
        #[source]
        source: ReferenceError,
    },
    /// Each with its chain, as one line.
    #[error("{}", .0.iter().map(|e| crate::error_chain(e)).collect::<Vec<_>>().join("; "))]
    Several(Vec<CredentialError>),
}

/// A credential value. Cheap to clone; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(Arc::from(value.into()))
    }
    /// The value, for the one place that needs it: the upstream auth header (and the guard's
    /// exact-match scan).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The resolved keys, by reference.
#[derive(Clone, Default)]
pub struct Credentials {
    keys: HashMap<CredentialRef, Secret>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<String> = self.keys.keys().map(CredentialRef::describe).collect();
        names.sort();
        f.debug_struct("Credentials").field("held", &names).finish()
    }
}

impl Credentials {
    pub fn get(&self, r: &CredentialRef) -> Option<&Secret> {
        self.keys.get(r)
    }
    pub fn insert(&mut self, r: CredentialRef, s: Secret) {
        self.keys.insert(r, s);
    }
    /// Every key held (for the built-in guard's exact-match scan and log redaction).
    pub fn all(&self) -> impl Iterator<Item = &Secret> {
        self.keys.values()
    }
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Reads every key the inference section references from the process environment and
/// `credentials_dir`. All problems are reported together; nothing is partially applied.
pub fn resolve(
    inference: &Inference,
    credentials_dir: &Path,
) -> Result<Credentials, CredentialError> {
    resolve_with(inference, credentials_dir, |name| std::env::var(name).ok())
}

/// [`resolve`] with the environment lookup passed in (tests, and callers with their own env).
pub fn resolve_with(
    inference: &Inference,
    credentials_dir: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Credentials, CredentialError> {
    let mut creds = Credentials::default();
    let mut errors = Vec::new();
    for b in &inference.backends {
        let Some(r) = &b.api_key else { continue };
        if creds.keys.contains_key(r) {
            continue;
        }
        match read_one(&b.name, r, credentials_dir, &env) {
            Ok(s) => creds.insert(r.clone(), s),
            Err(e) => errors.push(e),
        }
    }
    match errors.len() {
        0 => Ok(creds),
        1 => Err(errors.remove(0)),
        _ => Err(CredentialError::Several(errors)),
    }
}

fn read_one(
    backend: &str,
    r: &CredentialRef,
    dir: &Path,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Secret, CredentialError> {
    let backend = backend.to_string();
    if let Err(source) = r.check_syntax() {
        return Err(CredentialError::BadReference { backend, source });
    }
    match r {
        CredentialRef::Env(name) => match env(name) {
            None => Err(CredentialError::MissingEnv {
                backend,
                name: name.clone(),
            }),
            Some(v) if v.trim().is_empty() => Err(CredentialError::EmptyEnv {
                backend,
                name: name.clone(),
            }),
            Some(v) => Ok(Secret::new(v.trim().to_string())),
        },
        CredentialRef::File(name) => {
            let path = dir.join(name);
            let meta = std::fs::metadata(&path).map_err(|source| CredentialError::MissingFile {
                backend: backend.clone(),
                path: path.clone(),
                source,
            })?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(CredentialError::FileMode {
                    backend,
                    path,
                    mode,
                });
            }
            let text =
                std::fs::read_to_string(&path).map_err(|source| CredentialError::MissingFile {
                    backend: backend.clone(),
                    path: path.clone(),
                    source,
                })?;
            let v = text.trim();
            if v.is_empty() {
                return Err(CredentialError::EmptyFile { backend, path });
            }
            Ok(Secret::new(v.to_string()))
        }
        // check_syntax() refuses inline values; say so again rather than assume it.
        CredentialRef::Inline(_) => Err(CredentialError::BadReference {
            backend,
            source: ReferenceError::Inline,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blueprint::{Backend, BackendKind};

    fn inference(refs: Vec<CredentialRef>) -> Inference {
        Inference {
            backends: refs
                .into_iter()
                .enumerate()
                .map(|(i, r)| Backend {
                    name: format!("b{i}"),
                    kind: BackendKind::Openai,
                    url: Some("http://127.0.0.1:1/v1".into()),
                    api_key: Some(r),
                    timeout: None,
                    mock: None,
                })
                .collect(),
            routes: vec![],
            allowed_models: vec!["m".into()],
            limits: Default::default(),
            guards: vec![],
            secret_guard: true,
            log_bodies: false,
        }
    }

    #[test]
    fn env_and_file_keys_resolve_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("nvidia");
        std::fs::write(&f, "file-key-value-123\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let inf = inference(vec![
            CredentialRef::Env("K".into()),
            CredentialRef::File("nvidia".into()),
        ]);
        let c = resolve_with(&inf, dir.path(), |n| {
            (n == "K").then(|| "env-key-value-456".into())
        })
        .unwrap();
        assert_eq!(
            c.get(&CredentialRef::Env("K".into())).unwrap().expose(),
            "env-key-value-456"
        );
        assert_eq!(
            c.get(&CredentialRef::File("nvidia".into()))
                .unwrap()
                .expose(),
            "file-key-value-123"
        );
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("key-value"), "{dbg}");
    }

    #[test]
    fn missing_and_loose_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("loose");
        std::fs::write(&f, "v").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let inf = inference(vec![
            CredentialRef::Env("NOPE_KEY".into()),
            CredentialRef::File("loose".into()),
            CredentialRef::File("absent".into()),
        ]);
        let e = resolve_with(&inf, dir.path(), |_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("NOPE_KEY"), "{e}");
        assert!(e.contains("chmod 600"), "{e}");
        assert!(e.contains("absent"), "{e}");
    }

    #[test]
    fn an_unreadable_file_keeps_its_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let inf = inference(vec![CredentialRef::File("absent".into())]);
        let e = resolve_with(&inf, dir.path(), |_| None).unwrap_err();
        let CredentialError::MissingFile { source, .. } = &e else {
            panic!("not MissingFile: {e:?}")
        };
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        let chain = crate::error_chain(&e);
        assert!(chain.contains("cannot read credentials file"), "{chain}");
        assert!(
            chain.ends_with("No such file or directory (os error 2)"),
            "{chain}"
        );
        // Several problems are reported on one line, each with its cause.
        let two = inference(vec![
            CredentialRef::File("absent".into()),
            CredentialRef::Env("NOPE_KEY".into()),
        ]);
        let e = resolve_with(&two, dir.path(), |_| None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("(create it with mode 0600): No such file"),
            "{e}"
        );
        assert!(
            e.contains("; backend `b1`: environment variable NOPE_KEY"),
            "{e}"
        );
    }
}
