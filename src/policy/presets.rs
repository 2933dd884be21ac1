//! Egress presets: named, maintained domain lists shipped with nemoclaw, so blueprints write
//! `presets: [github, npm]` instead of hand-copying domains, and the user's own presets
//! (`presets/<name>.yaml` or `.yml`, in a blueprint source or in the home). Entries use the same
//! syntax as `network.egress.allowedDomains`. The one place that knows how a preset file is
//! named, found and read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::network::PolicyError;
use super::types::DomainRule;

/// The suffixes of a user preset file, in the order a lookup tries them.
pub const FILE_SUFFIXES: [&str; 2] = ["yaml", "yml"];

/// `(name, description, domains)` for every built-in preset.
pub const BUILTIN: &[(&str, &str, &[&str])] = &[
    (
        "github",
        "GitHub: web, API, raw content, release downloads, git over HTTPS",
        &[
            "github.com",
            "api.github.com",
            "codeload.github.com",
            "*.githubusercontent.com",
            "uploads.github.com",
        ],
    ),
    (
        "npm",
        "the npm registry",
        &["registry.npmjs.org", "registry.yarnpkg.com"],
    ),
    (
        "pypi",
        "the Python Package Index",
        &["pypi.org", "files.pythonhosted.org"],
    ),
    (
        "crates",
        "crates.io (Rust)",
        &["crates.io", "index.crates.io", "static.crates.io"],
    ),
    (
        "huggingface",
        "Hugging Face Hub: models, datasets and their CDN",
        &["huggingface.co", "*.huggingface.co", "*.hf.co"],
    ),
    (
        "slack",
        "Slack API, webhooks and files",
        &["slack.com", "*.slack.com", "*.slack-edge.com"],
    ),
    ("telegram", "Telegram Bot API", &["api.telegram.org"]),
    (
        "discord",
        "Discord API, gateway and CDN",
        &[
            "discord.com",
            "*.discord.com",
            "gateway.discord.gg",
            "cdn.discordapp.com",
            "media.discordapp.net",
        ],
    ),
    (
        "nvidia",
        "NVIDIA API catalog and NIM endpoints",
        &[
            "integrate.api.nvidia.com",
            "build.nvidia.com",
            "api.nvcf.nvidia.com",
            "nvcr.io",
        ],
    ),
    ("openai", "OpenAI API", &["api.openai.com"]),
    ("anthropic", "Anthropic API", &["api.anthropic.com"]),
    (
        "debian",
        "Debian package mirrors",
        &["deb.debian.org", "security.debian.org"],
    ),
];

/// The domains of a built-in preset.
pub fn builtin(name: &str) -> Option<&'static [&'static str]> {
    BUILTIN
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, d)| *d)
}

/// Names of the built-in presets.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|(n, _, _)| *n)
}

/// A user preset file, `presets/<name>.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PresetFile {
    #[serde(default)]
    pub description: String,
    pub domains: Vec<DomainRule>,
}

/// A preset as listed by `nemoclaw presets`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preset {
    pub name: String,
    pub description: String,
    /// `builtin` or the path of the user's file.
    pub source: String,
    pub domains: Vec<DomainRule>,
}

/// The built-in presets, then the user's `<dir>/<name>.yaml` (a user preset replaces a built-in
/// of the same name). A missing directory means no user presets.
pub fn all_presets(user_dir: Option<&Path>) -> Result<BTreeMap<String, Preset>, PolicyError> {
    let mut out = BTreeMap::new();
    for (name, description, domains) in BUILTIN {
        out.insert(
            (*name).to_string(),
            Preset {
                name: (*name).to_string(),
                description: (*description).to_string(),
                source: "builtin".into(),
                domains: domains
                    .iter()
                    .map(|d| DomainRule::Name((*d).to_string()))
                    .collect(),
            },
        );
    }
    let Some(dir) = user_dir else { return Ok(out) };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(preset_file_error(dir)(e.into())),
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let Some(name) = preset_name(&path) else {
            continue;
        };
        let err = preset_file_error(&path);
        let text = std::fs::read_to_string(&path).map_err(|e| err(e.into()))?;
        let file = parse_preset_file(&text).map_err(err)?;
        out.insert(
            name.to_string(),
            Preset {
                name: name.to_string(),
                description: file.description,
                source: path.display().to_string(),
                domains: file.domains,
            },
        );
    }
    Ok(out)
}

/// Wraps what is wrong with the preset file (or directory) at `path`.
fn preset_file_error(path: &Path) -> impl Fn(PresetFileError) -> PolicyError + '_ {
    move |source| PolicyError::PresetFile {
        path: path.display().to_string(),
        source,
    }
}

/// What is wrong with a user preset file.
#[derive(Debug, thiserror::Error)]
pub enum PresetFileError {
    #[error(transparent)]
    Unreadable(#[from] std::io::Error),
    #[error(transparent)]
    Yaml(#[from] serde_saphyr::Error),
    #[error("`domains` is empty: list the domains this preset allows")]
    NoDomains,
}

/// Parses a user preset file (`description`, `domains`).
pub fn parse_preset_file(text: &str) -> Result<PresetFile, PresetFileError> {
    let file: PresetFile = serde_saphyr::from_str(text)?;
    if file.domains.is_empty() {
        return Err(PresetFileError::NoDomains);
    }
    Ok(file)
}

/// The preset a file defines, by its name (`github.yaml` and `github.yml` define `github`), or
/// `None` for a file that is not a preset.
pub fn preset_name(path: &Path) -> Option<&str> {
    let suffix = path.extension()?.to_str()?;
    if !FILE_SUFFIXES.contains(&suffix) {
        return None;
    }
    path.file_stem()?.to_str()
}

/// The file of user preset `name` in `dir`, if there is one.
pub fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    FILE_SUFFIXES
        .iter()
        .map(|x| dir.join(format!("{name}.{x}")))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::domain::parse_rule;

    #[test]
    fn every_builtin_entry_is_a_valid_rule() {
        for (name, _, domains) in BUILTIN {
            assert!(!domains.is_empty(), "{name}");
            for d in *domains {
                parse_rule(&DomainRule::Name((*d).into()))
                    .unwrap_or_else(|e| panic!("{name}: {d}: {e}"));
            }
        }
    }

    #[test]
    fn preset_files_are_named_yaml_or_yml() {
        assert_eq!(preset_name(Path::new("/p/github.yaml")), Some("github"));
        assert_eq!(preset_name(Path::new("/p/corp.yml")), Some("corp"));
        assert_eq!(preset_name(Path::new("/p/notes.txt")), None);
        assert_eq!(preset_name(Path::new("/p/yaml")), None);
    }

    #[test]
    fn a_yml_user_preset_is_found_and_listed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("corp.yml"), "domains: [corp.example]\n").unwrap();
        assert_eq!(
            find_file(dir.path(), "corp"),
            Some(dir.path().join("corp.yml"))
        );
        assert_eq!(find_file(dir.path(), "other"), None);
        let all = all_presets(Some(dir.path())).unwrap();
        assert_eq!(
            all["corp"].domains,
            vec![DomainRule::Name("corp.example".into())]
        );
    }

    #[test]
    fn a_bad_preset_file_keeps_its_path_and_its_source() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.yaml"), "domains: []\n").unwrap();
        let e = all_presets(Some(dir.path())).unwrap_err();
        let PolicyError::PresetFile { path, source } = &e else {
            panic!("{e:?}");
        };
        assert!(path.ends_with("bad.yaml"), "{path}");
        assert!(matches!(source, PresetFileError::NoDomains));
        assert_eq!(
            crate::error_chain(&e),
            format!("preset file {path}: `domains` is empty: list the domains this preset allows")
        );
        std::fs::write(
            dir.path().join("bad.yaml"),
            "domains: [a.example]\nextra: 1\n",
        )
        .unwrap();
        let e = all_presets(Some(dir.path())).unwrap_err();
        assert!(matches!(
            e,
            PolicyError::PresetFile {
                source: PresetFileError::Yaml(_),
                ..
            }
        ));
    }
}
