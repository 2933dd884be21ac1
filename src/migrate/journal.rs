//! The upgrade journal, `run/<name>/upgrade.json`: written (atomically) before each step of an
//! upgrade runs and removed only when the upgrade commits or has been rolled back. Whoever finds
//! one (the next `apply`, `start`, `migrate` or `rollback`) knows an upgrade was interrupted
//! and at which step, and finishes its rollback from what the journal holds: the snapshot, and
//! the deployment record and blueprint of the version that ran before.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::home::{write_atomic, Home, HomeError};

/// The format of `upgrade.json`.
pub const JOURNAL_FORMAT: u32 = 1;

/// The step an upgrade was at. Each is recorded before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    /// Stopping the old version. The state is untouched.
    Stopping,
    /// Taking the snapshot. The state is untouched; a half-built snapshot is never listed.
    Snapshotting,
    /// Running the scripts on the state: from here on the snapshot must be restored.
    Migrating,
    /// The new version is recorded and starting (health gate).
    Starting,
    /// Restoring the snapshot and the old version.
    RollingBack,
}

impl Phase {
    /// Whether the state may have changed since the snapshot, so rolling back restores it.
    pub fn state_touched(self) -> bool {
        matches!(
            self,
            Phase::Migrating | Phase::Starting | Phase::RollingBack
        )
    }
}

/// An upgrade in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Journal {
    pub format: u32,
    pub name: String,
    pub from: u32,
    pub to: u32,
    pub phase: Phase,
    /// The snapshot taken before the scripts ran (its directory name), once complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Whether the old version was running (a rollback starts it again).
    pub was_running: bool,
    /// The old version's `deployed.json` and `blueprint.yaml`, verbatim.
    pub old_record: String,
    pub old_blueprint: String,
    /// Unix seconds.
    pub started_at: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error("cannot read the upgrade journal {path}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the upgrade journal {path} is damaged (an interrupted upgrade of this sandbox cannot be finished automatically: restore its state with `nemoclaw rollback NAME`, then remove the file)")]
    Corrupt {
        path: std::path::PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Journal {
    /// Records this journal (atomically, fsynced) before the step it names runs.
    pub fn save(&self, home: &Home) -> Result<(), JournalError> {
        let bytes = serde_json::to_vec_pretty(self).expect("a journal always serialises");
        crate::home::create_dir_private(&home.run_dir(&self.name))?;
        write_atomic(&home.upgrade_journal(&self.name), &bytes, 0o600)?;
        Ok(())
    }

    /// Moves to `phase` and records it.
    pub fn enter(&mut self, home: &Home, phase: Phase) -> Result<(), JournalError> {
        self.phase = phase;
        self.save(home)
    }
}

/// The journal of an interrupted (or running) upgrade of `name`, if any.
pub fn read(home: &Home, name: &str) -> Result<Option<Journal>, JournalError> {
    let path = home.upgrade_journal(name);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| JournalError::Corrupt { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(JournalError::Read { path, source }),
    }
}

/// Removes the journal: the upgrade committed or its rollback finished.
pub fn clear(home: &Home, name: &str) -> Result<(), JournalError> {
    let path = home.upgrade_journal(name);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(JournalError::Read { path, source }),
    }
}

/// The names of every sandbox with a journal in `run/`.
pub fn pending(home: &Home) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(home.run_root()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| home.upgrade_journal(n).is_file())
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal() -> Journal {
        Journal {
            format: JOURNAL_FORMAT,
            name: "a".into(),
            from: 1,
            to: 3,
            phase: Phase::Stopping,
            snapshot: None,
            was_running: true,
            old_record: "{}".into(),
            old_blueprint: "kind: Blueprint\n".into(),
            started_at: 1,
        }
    }

    #[test]
    fn a_journal_is_recorded_before_each_step_and_gone_after_clear() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        assert_eq!(read(&home, "a").unwrap(), None);
        let mut j = journal();
        j.save(&home).unwrap();
        j.snapshot = Some("20261207T000000.000Z-v1".into());
        j.enter(&home, Phase::Migrating).unwrap();
        let back = read(&home, "a").unwrap().unwrap();
        assert_eq!(back, j);
        assert!(back.phase.state_touched());
        assert_eq!(pending(&home), ["a"]);
        clear(&home, "a").unwrap();
        assert_eq!(read(&home, "a").unwrap(), None);
        assert!(pending(&home).is_empty());
    }

    #[test]
    fn a_damaged_journal_is_an_error_that_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        std::fs::create_dir_all(home.run_dir("a")).unwrap();
        std::fs::write(home.upgrade_journal("a"), "{not json").unwrap();
        let e = read(&home, "a").unwrap_err().to_string();
        assert!(e.contains("nemoclaw rollback"), "{e}");
    }
}
