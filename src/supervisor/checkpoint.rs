//! Checkpoints of a running sandbox's state, against state corruption (an agent that writes
//! malformed state and then fails at every start).
//!
//! A checkpoint freezes the sandbox's cgroup (so no file changes while it is copied), snapshots
//! `state/<name>/` with SQLite databases copied through the online backup API
//! ([`snapshot::create`], kind [`Kind::Checkpoint`], the deployed blueprint attached), always
//! thaws it again (a guard thaws on every error path), and prunes to
//! `lifecycle.checkpoint.keep`. The supervisor takes one every `lifecycle.checkpoint.every`
//! while the agent runs and has not crashed within the crash window, and on request
//! (`nemoclaw checkpoint NAME`, [`request_now`]). With `lifecycle.restoreOnCrashLoop`, a
//! supervisor that gives up restores the newest one once ([`Checkpoints::restore_newest`]).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::client::{ask, AskError};
use super::protocol::{CheckpointInfo, Request};
use crate::blueprint::types::{defaults, Blueprint, Lifecycle};
use crate::home::Home;
use crate::migrate::snapshot::{self, Info, Kind, SnapshotError};
use crate::sandbox::cgroups::{CgroupError, SandboxCgroup};

/// The deployed blueprint's name inside a checkpoint.
pub const BLUEPRINT_ATTACHMENT: &str = "blueprint.yaml";

/// How long `nemoclaw checkpoint` waits for the supervisor's answer (the copy of a large state
/// takes a while; the agent is frozen meanwhile anyway).
const REPLY_WAIT: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("the sandbox runs without a cgroup: there is nothing to freeze")]
    NoCgroup,
    #[error("cannot freeze the sandbox")]
    Freeze(#[source] CgroupError),
    #[error("cannot thaw the sandbox after the checkpoint")]
    Thaw(#[source] CgroupError),
    #[error("cannot read the deployed blueprint {}", .path.display())]
    Blueprint {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot snapshot the state")]
    Snapshot(#[source] SnapshotError),
    #[error("cannot prune old checkpoints")]
    Prune(#[source] SnapshotError),
    #[error("cannot list the checkpoints")]
    List(#[source] SnapshotError),
    #[error("cannot restore checkpoint {id}")]
    Restore {
        id: String,
        #[source]
        source: SnapshotError,
    },
    #[error(transparent)]
    Ask(#[from] AskError),
}

/// `lifecycle.checkpoint` and `lifecycle.restoreOnCrashLoop`, with defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Time between periodic checkpoints; none without `lifecycle.checkpoint`.
    pub every: Option<Duration>,
    /// Checkpoints kept (at least the newest).
    pub keep: usize,
    pub restore_on_crash_loop: bool,
}

impl Settings {
    pub fn from_lifecycle(l: &Lifecycle) -> Settings {
        let keep = l
            .checkpoint
            .as_ref()
            .and_then(|c| c.keep)
            .unwrap_or(defaults::KEEP_CHECKPOINTS);
        Settings {
            every: l.checkpoint.as_ref().map(|c| c.every.as_duration()),
            keep: usize::try_from(keep).unwrap_or(usize::MAX).max(1),
            restore_on_crash_loop: l.restore_on_crash_loop,
        }
    }
}

/// A checkpoint just taken.
#[derive(Debug, Clone)]
pub struct Taken {
    pub info: Info,
    /// From the freeze request until the sandbox was thawed.
    pub frozen: Duration,
    /// Older checkpoints removed.
    pub pruned: Vec<String>,
}

impl Taken {
    /// The control protocol's (and the supervisor event's) account of it.
    pub fn report(&self) -> CheckpointInfo {
        CheckpointInfo {
            id: self.info.id.clone(),
            files: self.info.files,
            bytes: self.info.bytes,
            frozen_ms: u64::try_from(self.frozen.as_millis()).unwrap_or(u64::MAX),
            pruned: self.pruned.clone(),
        }
    }
}

/// What a supervisor keeps to checkpoint its sandbox and to restore a checkpoint once.
#[derive(Debug)]
pub struct Checkpoints {
    pub settings: Settings,
    snapshots: PathBuf,
    state: PathBuf,
    /// The running blueprint's version, and its deployed copy (read at each checkpoint and
    /// attached, so a hot reload of network or inference settings is what a checkpoint holds).
    version: u32,
    blueprint: PathBuf,
    /// When the next periodic checkpoint is due.
    next: Option<Instant>,
    /// Set once a checkpoint was restored after a crash loop (never twice per supervisor).
    note: Option<String>,
}

impl Checkpoints {
    /// For sandbox `name` running `bp`; the first periodic checkpoint is due one period from
    /// now.
    pub fn new(home: &Home, name: &str, bp: &Blueprint) -> Checkpoints {
        let mut c = Checkpoints {
            settings: Settings::from_lifecycle(&bp.lifecycle),
            snapshots: home.snapshots(name),
            state: home.state(name),
            version: bp.metadata.version,
            blueprint: home.deployed_blueprint(name),
            next: None,
            note: None,
        };
        c.schedule(Instant::now());
        c
    }

    /// Takes the reloaded lifecycle settings; a changed period counts from now.
    pub fn reload(&mut self, l: &Lifecycle) {
        let settings = Settings::from_lifecycle(l);
        let period_changed = settings.every != self.settings.every;
        self.settings = settings;
        if period_changed {
            self.schedule(Instant::now());
        }
    }

    /// The next periodic checkpoint is due one period after `now`.
    pub fn schedule(&mut self, now: Instant) {
        self.next = self.settings.every.map(|every| now + every);
    }

    /// When the next periodic checkpoint is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.next
    }

    /// "restored checkpoint <id> after N crashes", once that happened.
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// Freezes the sandbox in `cg`, snapshots the state, thaws it, prunes old checkpoints.
    pub fn take(&self, cg: &SandboxCgroup) -> Result<Taken, CheckpointError> {
        let blueprint =
            std::fs::read(&self.blueprint).map_err(|source| CheckpointError::Blueprint {
                path: self.blueprint.clone(),
                source,
            })?;
        let attachments = [(BLUEPRINT_ATTACHMENT, blueprint.as_slice())];
        let request = snapshot::Request {
            version: self.version,
            kind: Kind::Checkpoint,
            attachments: &attachments,
            sqlite_backup: true,
        };
        let frozen = Frozen::freeze(cg)?;
        let created = snapshot::create(&self.snapshots, &self.state, &request);
        let frozen_for = frozen.thaw()?;
        let info = created.map_err(CheckpointError::Snapshot)?;
        let pruned = snapshot::prune(&self.snapshots, Kind::Checkpoint, self.settings.keep)
            .map_err(CheckpointError::Prune)?;
        Ok(Taken {
            info,
            frozen: frozen_for,
            pruned,
        })
    }

    /// After a crash loop (the agent is down): restores the newest checkpoint into the state
    /// dir, when `restoreOnCrashLoop` is on, one exists, and none was restored before by this
    /// supervisor. Returns it, and keeps the note "restored checkpoint <id> after N crashes".
    pub fn restore_newest(&mut self, crashes: u32) -> Result<Option<Info>, CheckpointError> {
        if !self.settings.restore_on_crash_loop || self.note.is_some() {
            return Ok(None);
        }
        let Some(newest) = self.newest()? else {
            return Ok(None);
        };
        snapshot::restore(&newest, &self.state).map_err(|source| CheckpointError::Restore {
            id: newest.id.clone(),
            source,
        })?;
        self.note = Some(format!(
            "restored checkpoint {} after {crashes} crashes",
            newest.id
        ));
        Ok(Some(newest))
    }

    /// The newest checkpoint of the sandbox, if any.
    fn newest(&self) -> Result<Option<Info>, CheckpointError> {
        let all = snapshot::list(&self.snapshots).map_err(CheckpointError::List)?;
        Ok(all.into_iter().rev().find(|i| i.kind == Kind::Checkpoint))
    }
}

/// A frozen sandbox: thawed when dropped, so every error path (and a panic) thaws it too.
struct Frozen<'a> {
    cg: &'a SandboxCgroup,
    since: Instant,
    thawed: bool,
}

impl<'a> Frozen<'a> {
    fn freeze(cg: &'a SandboxCgroup) -> Result<Frozen<'a>, CheckpointError> {
        let since = Instant::now();
        cg.freeze().map_err(CheckpointError::Freeze)?;
        Ok(Frozen {
            cg,
            since,
            thawed: false,
        })
    }

    /// Thaws now; returns how long the sandbox was frozen.
    fn thaw(mut self) -> Result<Duration, CheckpointError> {
        self.thawed = true;
        let result = self.cg.thaw();
        let frozen_for = self.since.elapsed();
        result.map_err(CheckpointError::Thaw)?;
        Ok(frozen_for)
    }
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        if !self.thawed {
            let _ = self.cg.thaw();
        }
    }
}

/// Asks the supervisor of `name` to take a checkpoint now (`nemoclaw checkpoint NAME`).
pub fn request_now(home: &Home, name: &str) -> Result<CheckpointInfo, CheckpointError> {
    Ok(ask(
        home,
        name,
        Request::Checkpoint,
        Some(REPLY_WAIT),
        |r| r.checkpoint.take(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifecycle(yaml: &str) -> Lifecycle {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn settings_default_to_none_and_keep_four() {
        let s = Settings::from_lifecycle(&Lifecycle::default());
        assert_eq!(s.every, None);
        assert_eq!(s.keep, 4);
        assert!(!s.restore_on_crash_loop);
        let s = Settings::from_lifecycle(&lifecycle(
            "checkpoint: {every: 6h, keep: 2}\nrestoreOnCrashLoop: true\n",
        ));
        assert_eq!(s.every, Some(Duration::from_secs(6 * 3600)));
        assert_eq!(s.keep, 2);
        assert!(s.restore_on_crash_loop);
        let l = lifecycle("checkpoint: {every: 1m, keep: 0}\n");
        assert_eq!(
            Settings::from_lifecycle(&l).keep,
            1,
            "the newest is always kept"
        );
    }

    /// Checkpoints of a state dir in a temporary home (no sandbox: restoring needs none).
    fn checkpoints(home: &Home, restore_on_crash_loop: bool) -> Checkpoints {
        std::fs::create_dir_all(home.state("a")).unwrap();
        Checkpoints {
            settings: Settings {
                every: None,
                keep: 4,
                restore_on_crash_loop,
            },
            snapshots: home.snapshots("a"),
            state: home.state("a"),
            version: 2,
            blueprint: home.deployed_blueprint("a"),
            next: None,
            note: None,
        }
    }

    fn snapshot_of(c: &Checkpoints, kind: Kind) -> Info {
        let attachments = [(BLUEPRINT_ATTACHMENT, b"metadata: {name: a}\n".as_slice())];
        let req = snapshot::Request {
            version: c.version,
            kind,
            attachments: &attachments,
            sqlite_backup: false,
        };
        snapshot::create(&c.snapshots, &c.state, &req).unwrap()
    }

    #[test]
    fn a_crash_loop_restores_the_newest_checkpoint_once() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let mut c = checkpoints(&home, true);
        let config = home.state("a").join("config.json");
        assert!(c.restore_newest(3).unwrap().is_none(), "none taken yet");
        std::fs::write(&config, "{\"v\": 1}").unwrap();
        snapshot_of(&c, Kind::Checkpoint);
        std::fs::write(&config, "{\"v\": 2}").unwrap();
        let newest = snapshot_of(&c, Kind::Checkpoint);
        std::fs::write(&config, "{\"v\": 3}").unwrap();
        snapshot_of(&c, Kind::Upgrade);
        std::fs::write(&config, "{\"v\": ").unwrap();

        let restored = c.restore_newest(5).unwrap().unwrap();
        assert_eq!(
            restored.id, newest.id,
            "the newest checkpoint, not the upgrade snapshot"
        );
        assert_eq!(std::fs::read_to_string(&config).unwrap(), "{\"v\": 2}");
        assert_eq!(
            c.note(),
            Some(format!("restored checkpoint {} after 5 crashes", newest.id).as_str())
        );
        std::fs::write(&config, "broken again").unwrap();
        assert!(c.restore_newest(5).unwrap().is_none(), "only once");
        assert_eq!(std::fs::read_to_string(&config).unwrap(), "broken again");
    }

    #[test]
    fn nothing_is_restored_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let mut c = checkpoints(&home, false);
        let config = home.state("a").join("config.json");
        std::fs::write(&config, "good").unwrap();
        snapshot_of(&c, Kind::Checkpoint);
        std::fs::write(&config, "bad").unwrap();
        assert!(c.restore_newest(5).unwrap().is_none());
        assert_eq!(std::fs::read_to_string(&config).unwrap(), "bad");
        assert_eq!(c.note(), None);
    }
}
