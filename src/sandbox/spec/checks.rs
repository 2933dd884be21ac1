//! Checks of single values from the blueprint: the sandbox name, environment variable names,
//! paths inside the sandbox, mount targets, and host paths (with `~/`).

use std::path::{Component, Path, PathBuf};

use super::{STATE_PATH, SYSTEM_DIRS};

/// Why a value from the blueprint cannot be used; [`super::build`] names the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckError {
    #[error("`{0}` is not a DNS label (lower-case letters, digits, `-`, at most 63)")]
    NotDnsLabel(String),
    #[error("not a valid environment variable name")]
    EnvName,
    #[error("contains a NUL byte")]
    Nul,
    #[error("`{0}` is not an absolute path")]
    NotAbsolute(String),
    #[error("`{0}` must be a normalised path (no `.`, `..` or repeated `/`)")]
    NotNormalised(String),
    #[error("`{0}` cannot be replaced by a mount")]
    Irreplaceable(String),
    #[error("`{path}` is inside `{reserved}`, which the sandbox provides itself")]
    Reserved {
        path: String,
        reserved: &'static str,
    },
    #[error("`{path}` is inside the read-only system directory /{dir}: choose a path such as /data or /workspace/NAME")]
    SystemDir { path: String, dir: &'static str },
    #[error("`~/` needs a home directory ($HOME is not set)")]
    NoHome,
    #[error("`{0}` is not an absolute path (or ~/...)")]
    HostNotAbsolute(String),
    #[error("`{0}` contains `..`")]
    ParentDir(String),
}

/// Paths inside the sandbox that the sandbox provides itself (no blueprint mount in or on them).
const RESERVED: [&str; 6] = [
    "/proc",
    "/dev",
    "/opt/nemoclaw",
    STATE_PATH,
    "/etc/ssl/certs",
    "/etc/alternatives",
];

/// The sandbox name is its hostname: a DNS label.
pub fn check_name(name: &str) -> Result<(), CheckError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(CheckError::NotDnsLabel(name.to_string()))
    }
}

pub fn check_env_name(k: &str) -> Result<(), CheckError> {
    if k.is_empty() || k.contains('=') || k.contains('\0') {
        return Err(CheckError::EnvName);
    }
    Ok(())
}

/// An absolute, normalised path inside the sandbox (no `.`/`..`, no `//`).
pub fn check_inside_path(p: &str) -> Result<(), CheckError> {
    if !p.starts_with('/') {
        return Err(CheckError::NotAbsolute(p.to_string()));
    }
    if p.contains('\0') {
        return Err(CheckError::Nul);
    }
    let ok = Path::new(p)
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !ok || p.contains("//") || (p.len() > 1 && p.ends_with('/')) {
        return Err(CheckError::NotNormalised(p.to_string()));
    }
    Ok(())
}

/// Blueprint mounts may not hide or nest into what the sandbox itself provides.
pub fn check_mount_target(p: &str) -> Result<(), CheckError> {
    let under = |base: &str| p == base || p.starts_with(&format!("{base}/"));
    if p == "/" || p == "/etc" || p == "/tmp" || p == "/workspace" {
        return Err(CheckError::Irreplaceable(p.to_string()));
    }
    if let Some(reserved) = RESERVED.into_iter().find(|r| under(r)) {
        return Err(CheckError::Reserved {
            path: p.to_string(),
            reserved,
        });
    }
    if let Some(dir) = SYSTEM_DIRS.into_iter().find(|d| under(&format!("/{d}"))) {
        return Err(CheckError::SystemDir {
            path: p.to_string(),
            dir,
        });
    }
    Ok(())
}

/// A host path from the blueprint: absolute (after `~/` becomes `home`), without `..`.
pub fn expand_home(host: &str, home: Option<&Path>) -> Result<PathBuf, CheckError> {
    let p = if let Some(rest) = host.strip_prefix("~/") {
        home.ok_or(CheckError::NoHome)?.join(rest)
    } else {
        PathBuf::from(host)
    };
    if !p.is_absolute() {
        return Err(CheckError::HostNotAbsolute(host.to_string()));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(CheckError::ParentDir(host.to_string()));
    }
    Ok(p)
}
