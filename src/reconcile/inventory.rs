//! The inventory: what nemoclaw deployed, one `run/<name>/deployed.json` per sandbox, plus a
//! generation number bumped on every change so a saved plan can tell it went stale.
//!
//! Only sandboxes in the inventory are ever touched: nemoclaw never adopts or deletes anything
//! it did not create. Records are written atomically under the apply lock.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::blueprint::Blueprint;
use crate::home::{write_atomic, Home, HomeError};

/// The format of `deployed.json`; bumped on incompatible changes.
pub const RECORD_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid deployment record (move it aside and run apply again to recreate it)")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path} has record format {found}, but this nemoclaw reads format {RECORD_FORMAT}: upgrade nemoclaw")]
    Format { path: PathBuf, found: u32 },
}

pub use crate::source::SourceRef;

/// One deployed sandbox, as nemoclaw last applied it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployed {
    pub format: u32,
    pub name: String,
    /// The applied blueprint, with source defaults filled in.
    pub blueprint: Blueprint,
    /// [`blueprint_hash`] of `blueprint`.
    pub hash: String,
    pub version: u32,
    pub source: SourceRef,
    /// Unix seconds.
    pub created_at: u64,
    pub applied_at: u64,
    /// Stopped by the user (`nemoclaw stop`): never restarted behind their back.
    #[serde(default)]
    pub stopped: bool,
    /// The reconciler leaves this sandbox at its recorded blueprint while the source's
    /// blueprint still hashes to `hold.desired_hash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<Hold>,
    /// The hash of the agent's plugin as deployed (`plugin::registry::Plugin::hash`): a plugin
    /// whose files change replaces the sandbox. Absent in records made before plugins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_hash: Option<String>,
}

/// Why a sandbox is kept at its recorded version although the source asks for another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hold {
    pub kind: HoldKind,
    /// [`blueprint_hash`] of the desired blueprint the hold is about: a different one ends it.
    pub desired_hash: String,
    /// The version that was refused or rolled back from.
    pub to_version: u32,
    /// For people: what happened and what to do.
    pub message: String,
    /// Unix seconds.
    pub at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HoldKind {
    /// The upgrade to `to_version` failed and was rolled back: not retried until the blueprint
    /// changes again or `apply --retry NAME`.
    UpgradeFailed,
    /// The user ran `nemoclaw rollback`: kept until the blueprint changes.
    RolledBack,
}

/// A stable content hash of a blueprint: `sha256:` and the hex digest of its canonical JSON.
pub fn blueprint_hash(bp: &Blueprint) -> String {
    let json = serde_json::to_vec(bp).expect("a blueprint always serialises");
    let digest = Sha256::digest(&json);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The deployed records and the generation they were read at.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub generation: u64,
    pub records: Vec<Deployed>,
}

fn record_path(home: &Home, name: &str) -> PathBuf {
    home.deployed_record(name)
}

fn generation_path(home: &Home) -> PathBuf {
    home.generation_file()
}

impl Inventory {
    /// Reads every `run/*/deployed.json` (a missing run dir is an empty inventory).
    pub fn load(home: &Home) -> Result<Inventory, InventoryError> {
        let run = home.run_root();
        let mut records = Vec::new();
        let entries = match fs::read_dir(&run) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Inventory::default()),
            Err(source) => return Err(InventoryError::Io { path: run, source }),
        };
        for entry in entries {
            let entry = entry.map_err(|source| InventoryError::Io {
                path: run.clone(),
                source,
            })?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let path = home.deployed_record(&name);
            match fs::read(&path) {
                Ok(bytes) => records.push(parse_record(&path, &bytes)?),
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        || e.kind() == std::io::ErrorKind::NotADirectory => {}
                Err(source) => return Err(InventoryError::Io { path, source }),
            }
        }
        records.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Inventory {
            generation: read_generation(home)?,
            records,
        })
    }

    pub fn get(&self, name: &str) -> Option<&Deployed> {
        self.records.iter().find(|r| r.name == name)
    }
}

fn parse_record(path: &Path, bytes: &[u8]) -> Result<Deployed, InventoryError> {
    #[derive(Deserialize)]
    struct Probe {
        format: u32,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|source| InventoryError::Corrupt {
        path: path.to_path_buf(),
        source,
    })?;
    if probe.format != RECORD_FORMAT {
        return Err(InventoryError::Format {
            path: path.to_path_buf(),
            found: probe.format,
        });
    }
    serde_json::from_slice(bytes).map_err(|source| InventoryError::Corrupt {
        path: path.to_path_buf(),
        source,
    })
}

/// The inventory generation (0 before the first apply).
pub fn read_generation(home: &Home) -> Result<u64, InventoryError> {
    let p = generation_path(home);
    match fs::read_to_string(&p) {
        Ok(s) => Ok(s.trim().parse().unwrap_or(0)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(source) => Err(InventoryError::Io { path: p, source }),
    }
}

/// Bumps the generation; call under the apply lock after changing records.
pub fn bump_generation(home: &Home) -> Result<u64, InventoryError> {
    let next = read_generation(home)? + 1;
    crate::home::create_dir_private(&home.run_root())?;
    write_atomic(
        &generation_path(home),
        format!("{next}\n").as_bytes(),
        0o600,
    )?;
    Ok(next)
}

/// Writes a record atomically (creating `run/<name>/`).
pub fn save_record(home: &Home, rec: &Deployed) -> Result<(), InventoryError> {
    crate::home::create_dir_private(&home.run_dir(&rec.name))?;
    let json = serde_json::to_vec_pretty(rec).expect("a record always serialises");
    write_atomic(&record_path(home, &rec.name), &json, 0o600)?;
    Ok(())
}

/// Removes a record (the sandbox is no longer nemoclaw's to manage).
pub fn remove_record(home: &Home, name: &str) -> Result<(), InventoryError> {
    let p = record_path(home, name);
    match fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(InventoryError::Io { path: p, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blueprint::load::parse_str;

    pub(crate) fn sample(name: &str) -> Blueprint {
        parse_str(&format!(
            "apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: {name}\n  version: 1\nagent:\n  type: demo\n"
        ))
        .unwrap()
    }

    #[test]
    fn records_round_trip_and_generation_bumps() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        assert_eq!(Inventory::load(&home).unwrap().records.len(), 0);
        let bp = sample("a");
        let rec = Deployed {
            format: RECORD_FORMAT,
            name: "a".into(),
            hash: blueprint_hash(&bp),
            version: 1,
            blueprint: bp,
            source: SourceRef {
                kind: "dir".into(),
                location: "/x".into(),
                file: Some("a.yaml".into()),
                commit: None,
            },
            created_at: 1,
            applied_at: 2,
            stopped: false,
            hold: None,
            plugin_hash: None,
        };
        save_record(&home, &rec).unwrap();
        assert_eq!(bump_generation(&home).unwrap(), 1);
        assert_eq!(bump_generation(&home).unwrap(), 2);
        let inv = Inventory::load(&home).unwrap();
        assert_eq!(inv.generation, 2);
        assert_eq!(inv.records, vec![rec]);
        remove_record(&home, "a").unwrap();
        assert!(Inventory::load(&home).unwrap().records.is_empty());
    }

    #[test]
    fn hash_is_stable_and_sensitive() {
        let a = sample("a");
        assert_eq!(blueprint_hash(&a), blueprint_hash(&a.clone()));
        let mut b = a.clone();
        b.metadata.version = 2;
        assert_ne!(blueprint_hash(&a), blueprint_hash(&b));
        assert!(blueprint_hash(&a).starts_with("sha256:"));
    }

    #[test]
    fn corrupt_and_future_records_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        fs::create_dir_all(home.run_dir("x")).unwrap();
        fs::write(home.run_dir("x").join("deployed.json"), "{not json").unwrap();
        assert!(Inventory::load(&home)
            .unwrap_err()
            .to_string()
            .contains("not a valid deployment record"));
        fs::write(home.run_dir("x").join("deployed.json"), r#"{"format": 9}"#).unwrap();
        assert!(Inventory::load(&home)
            .unwrap_err()
            .to_string()
            .contains("upgrade nemoclaw"));
    }
}
