//! TEMPORARY stand-in for helper B's registry (same API as the contract), so the runtime
//! compiles meanwhile.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::blueprint::diag::Diagnostic;
use crate::blueprint::plugin::{PluginManifest, MANIFEST};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Builtin,
    Home(PathBuf),
    Source(PathBuf),
    Deployed(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Plugin {
    pub manifest: PluginManifest,
    pub origin: Origin,
    pub files: BTreeMap<String, String>,
    pub hash: String,
}

pub struct Search<'a> {
    pub source_dir: Option<&'a Path>,
    pub home_plugins: Option<&'a Path>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("no plugin `{0}`")]
    NotFound(String),
    #[error("{}", .diagnostics.iter().map(|d| d.headline()).collect::<Vec<_>>().join("; "))]
    Invalid { diagnostics: Vec<Diagnostic> },
    #[error("{}", .0.display())]
    Io(PathBuf, #[source] std::io::Error),
}

const BUILTIN: &[(&str, &[(&str, &str)])] = &[
    ("command", &[("plugin.yaml", include_str!("../../plugins/command/plugin.yaml"))]),
    ("demo", &[("plugin.yaml", include_str!("../../plugins/demo/plugin.yaml"))]),
    ("openclaw", &[
        ("plugin.yaml", include_str!("../../plugins/openclaw/plugin.yaml")),
        ("openclaw.json.j2", include_str!("../../plugins/openclaw/openclaw.json.j2")),
    ]),
    ("hermes", &[
        ("plugin.yaml", include_str!("../../plugins/hermes/plugin.yaml")),
        ("config.yaml.j2", include_str!("../../plugins/hermes/config.yaml.j2")),
    ]),
];

fn from_files(files: BTreeMap<String, String>, origin: Origin, path: &Path) -> Result<Plugin, RegistryError> {
    let text = files.get(MANIFEST).cloned().unwrap_or_default();
    let dir_name = path
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .unwrap_or("");
    let read = |rel: &str| files.get(rel).cloned();
    // Presets are resolved by the sandbox's policy at start; `validate` checks them by name.
    let manifest: PluginManifest =
        crate::blueprint::plugin::check(dir_name, path, &text, &read, &|_| true)
            .map_err(|diagnostics| RegistryError::Invalid { diagnostics })?;
    let mut h = Sha256::new();
    for (k, v) in &files {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    Ok(Plugin { manifest, origin, files, hash: crate::migrate::tree::hex(&h.finalize()) })
}

pub fn builtin(name: &str) -> Option<Plugin> {
    let (_, files) = BUILTIN.iter().find(|(n, _)| *n == name)?;
    let files = files.iter().map(|(p, t)| (p.to_string(), t.to_string())).collect();
    let path = Path::new("plugins").join(name).join(MANIFEST);
    from_files(files, Origin::Builtin, &path).ok()
}

pub fn load_dir(dir: &Path, origin: Origin) -> Result<Plugin, RegistryError> {
    let mut files = BTreeMap::new();
    walk(dir, dir, &mut files)?;
    from_files(files, origin, &dir.join(MANIFEST))
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) -> Result<(), RegistryError> {
    for e in std::fs::read_dir(dir).map_err(|e| RegistryError::Io(dir.into(), e))? {
        let e = e.map_err(|e| RegistryError::Io(dir.into(), e))?;
        let p = e.path();
        if p.is_dir() {
            walk(root, &p, out)?;
        } else {
            let rel = p.strip_prefix(root).unwrap_or(&p).to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).map_err(|e| RegistryError::Io(p.clone(), e))?;
            out.insert(rel, text);
        }
    }
    Ok(())
}

pub fn find(name: &str, s: &Search) -> Result<Plugin, RegistryError> {
    if let Some(src) = s.source_dir {
        let d = src.join("plugins").join(name);
        if d.join(MANIFEST).is_file() {
            return load_dir(&d, Origin::Source(d.clone()));
        }
    }
    if let Some(h) = s.home_plugins {
        let d = h.join(name);
        if d.join(MANIFEST).is_file() {
            return load_dir(&d, Origin::Home(d.clone()));
        }
    }
    builtin(name).ok_or_else(|| RegistryError::NotFound(name.into()))
}

pub fn save(p: &Plugin, dir: &Path) -> Result<(), RegistryError> {
    let _ = std::fs::remove_dir_all(dir);
    for (rel, text) in &p.files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| RegistryError::Io(parent.into(), e))?;
        }
        crate::home::write_atomic(&path, text.as_bytes(), 0o600)
            .map_err(|e| RegistryError::Io(path.clone(), std::io::Error::other(e)))?;
    }
    Ok(())
}
