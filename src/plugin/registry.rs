//! Where plugins come from: built into the binary (the repository's `plugins/`), the home's
//! `plugins/<name>/`, a source's `plugins/<name>/`, or the copy saved beside a deployed
//! blueprint (`run/<name>/plugins/<type>/`). A plugin is its manifest plus every file of its
//! directory (templates, hooks) by relative path, and a hash over them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::blueprint::diag::Diagnostic;
use crate::blueprint::plugin::{PluginManifest, MANIFEST};

/// Where a plugin was found (the plugin's directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Builtin,
    Home(PathBuf),
    Source(PathBuf),
    Deployed(PathBuf),
}

/// One plugin, loaded.
#[derive(Debug, Clone)]
pub struct Plugin {
    pub manifest: PluginManifest,
    pub origin: Origin,
    pub files: BTreeMap<String, String>,
    pub hash: String,
}

/// Where [`find`] and [`list`] look besides the built-in plugins.
pub struct Search<'a> {
    /// A source directory (its `plugins/` holds plugins).
    pub source_dir: Option<&'a Path>,
    /// The home's `plugins/`.
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

/// The built-in plugins' files, by plugin: one line per file.
const BUILTIN: &[(&str, &[(&str, &str)])] = &[
    (
        "command",
        &[(
            "plugin.yaml",
            include_str!("../../plugins/command/plugin.yaml"),
        )],
    ),
    (
        "demo",
        &[(
            "plugin.yaml",
            include_str!("../../plugins/demo/plugin.yaml"),
        )],
    ),
    (
        "openclaw",
        &[
            (
                "plugin.yaml",
                include_str!("../../plugins/openclaw/plugin.yaml"),
            ),
            (
                "openclaw.json.j2",
                include_str!("../../plugins/openclaw/openclaw.json.j2"),
            ),
        ],
    ),
    (
        "hermes",
        &[
            (
                "plugin.yaml",
                include_str!("../../plugins/hermes/plugin.yaml"),
            ),
            (
                "config.yaml.j2",
                include_str!("../../plugins/hermes/config.yaml.j2"),
            ),
        ],
    ),
];

/// A plugin from its files (`plugin.yaml` among them); the hash covers every path and text.
fn from_files(
    files: BTreeMap<String, String>,
    origin: Origin,
    path: &Path,
) -> Result<Plugin, RegistryError> {
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
    Ok(Plugin {
        manifest,
        origin,
        files,
        hash: crate::migrate::tree::hex(&h.finalize()),
    })
}

/// The built-in plugin `name`.
pub fn builtin(name: &str) -> Option<Plugin> {
    let (_, files) = BUILTIN.iter().find(|(n, _)| *n == name)?;
    let files = files
        .iter()
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .collect();
    let path = Path::new("plugins").join(name).join(MANIFEST);
    from_files(files, Origin::Builtin, &path).ok()
}

/// The plugin in `dir` (every file under it).
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
            let rel = p
                .strip_prefix(root)
                .unwrap_or(&p)
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&p).map_err(|e| RegistryError::Io(p.clone(), e))?;
            out.insert(rel, text);
        }
    }
    Ok(())
}

/// The plugin `name`: the source's, else the home's, else the built-in one.
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

/// Writes the plugin's files into `dir` (replacing what was there), each atomically.
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

/// A plugin as `plugins list` shows it, with the ones of the same name it hides.
#[derive(Debug, Clone)]
pub struct Listed {
    pub plugin: Plugin,
    /// Origins of same-named plugins this one wins over (a home plugin over a built-in).
    pub shadows: Vec<Origin>,
}

impl Origin {
    /// `builtin`, `home /path`, `source /path`, `deployed /path`.
    pub fn describe(&self) -> String {
        match self {
            Origin::Builtin => "builtin".into(),
            Origin::Home(p) => format!("home {}", p.display()),
            Origin::Source(p) => format!("source {}", p.display()),
            Origin::Deployed(p) => format!("deployed {}", p.display()),
        }
    }
}

/// Every plugin the search sees, by name: the source's win over the home's, which win over
/// the built-in ones. A plugin dir that does not load is an error naming it.
pub fn list(s: &Search) -> Result<Vec<Listed>, RegistryError> {
    let mut by_name: BTreeMap<String, Listed> = BTreeMap::new();
    let mut add = |p: Plugin| {
        let name = p.manifest.metadata.name.clone();
        let shadows = match by_name.remove(&name) {
            Some(older) => {
                let mut s = older.shadows;
                s.push(older.plugin.origin);
                s
            }
            None => vec![],
        };
        by_name.insert(name, Listed { plugin: p, shadows });
    };
    for name in crate::blueprint::plugin::BUILTIN_NAMES {
        if let Some(p) = builtin(name) {
            add(p);
        }
    }
    let dirs = [
        (
            s.home_plugins.map(Path::to_path_buf),
            Origin::Home as fn(PathBuf) -> Origin,
        ),
        (
            s.source_dir.map(|d| d.join("plugins")),
            Origin::Source as fn(PathBuf) -> Origin,
        ),
    ];
    for (dir, origin) in dirs {
        let Some(dir) = dir else { continue };
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut subdirs: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        subdirs.sort();
        for d in subdirs.into_iter().filter(|d| d.join(MANIFEST).is_file()) {
            add(load_dir(&d, origin(d.clone()))?);
        }
    }
    Ok(by_name.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_name_has_its_embedded_plugin() {
        let embedded: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
        assert_eq!(embedded, crate::blueprint::plugin::BUILTIN_NAMES);
        for name in embedded {
            let p = builtin(name).unwrap();
            assert_eq!(p.manifest.metadata.name, name);
            for f in p.manifest.start.files.iter().map(|f| &f.template) {
                assert!(p.files.contains_key(f), "{name}: {f} is embedded");
            }
        }
    }

    fn manifest(name: &str, description: &str) -> String {
        format!("apiVersion: nemoclaw.dev/v1\nkind: Plugin\nmetadata: {{name: {name}, description: {description}}}\nstart: {{}}\n")
    }

    #[test]
    fn the_source_wins_over_the_home_over_the_builtin_and_a_saved_copy_loads_the_same() {
        let t = tempfile::tempdir().unwrap();
        let home = t.path().join("home");
        let src = t.path().join("src");
        for (dir, what) in [
            (home.join("demo"), "home"),
            (src.join("plugins/demo"), "source"),
        ] {
            std::fs::create_dir_all(dir.join("t")).unwrap();
            std::fs::write(dir.join(MANIFEST), manifest("demo", what)).unwrap();
            std::fs::write(dir.join("t/a.j2"), what).unwrap();
        }
        fn search<'a>(s: Option<&'a Path>, home: &'a Path) -> Search<'a> {
            Search {
                source_dir: s,
                home_plugins: Some(home),
            }
        }
        let from_src = find("demo", &search(Some(&src), &home)).unwrap();
        assert_eq!(from_src.origin, Origin::Source(src.join("plugins/demo")));
        assert_eq!(from_src.files["t/a.j2"], "source");
        let from_home = find("demo", &search(None, &home)).unwrap();
        assert_eq!(from_home.origin, Origin::Home(home.join("demo")));
        assert_ne!(from_home.hash, from_src.hash);
        assert_eq!(
            find("openclaw", &search(None, &home)).unwrap().origin,
            Origin::Builtin
        );
        assert!(matches!(
            find("nosuch", &search(None, &home)),
            Err(RegistryError::NotFound(_))
        ));

        let saved = t.path().join("run/x/plugins/demo");
        save(&from_src, &saved).unwrap();
        let again = load_dir(&saved, Origin::Deployed(saved.clone())).unwrap();
        assert_eq!(
            (again.hash, again.files),
            (from_src.hash.clone(), from_src.files.clone())
        );

        let listed = list(&search(Some(&src), &home)).unwrap();
        let demo = listed
            .iter()
            .find(|l| l.plugin.manifest.metadata.name == "demo")
            .unwrap();
        assert_eq!(
            demo.shadows,
            vec![Origin::Builtin, Origin::Home(home.join("demo"))]
        );
    }
}
