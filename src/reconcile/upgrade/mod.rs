//! The upgrade transaction behind `~ upgrade vN→vM`: stop the old version → snapshot its state →
//! run the migration scripts on the state → record and start the new version → wait for it to
//! be healthy → commit (forget the journal, keep the newest `migrations.keep` snapshots).
//!
//! Every step is journalled (`migrate::journal`) before it runs. Any failure after the snapshot
//! restores the state from it byte for byte, puts back the old version's record and blueprint
//! and starts the old version again; the failed version is then held (not retried until its
//! blueprint changes or `apply --retry NAME`). A crash at any step leaves the journal behind,
//! and [`recover`] (run by the next `apply`, `start`, `migrate` or `rollback`) finishes the
//! rollback, after which the upgrade runs again from a clean state.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use super::apply::{Ctx, RuntimeError};
use super::inventory::{Deployed, Inventory, InventoryError};
use super::plan::Change;
use crate::blueprint::types::defaults;
use crate::blueprint::Blueprint;
use crate::home::{Home, HomeError};
use crate::migrate::engine::{self, RunInput, RunReport, ScriptError, Step};
use crate::migrate::journal::{self, Journal, JournalError, Phase, JOURNAL_FORMAT};
use crate::migrate::log;

mod undo;
use crate::migrate::snapshot::{self, Kind, SnapshotError};
pub(in crate::reconcile) use undo::restore;
pub use undo::{recover, recover_all, Recovered};

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("upgrade v{from}→v{to} of `{name}` failed and was rolled back: the state was restored from snapshot {snapshot} and v{from} {restarted}")]
    RolledBack {
        name: String,
        from: u32,
        to: u32,
        snapshot: String,
        /// What became of the old version: "runs again", "is back (stopped)", or why not.
        restarted: String,
        #[source]
        cause: Box<UpgradeError>,
    },
    #[error("stopping the old version")]
    Stop(#[source] RuntimeError),
    #[error("starting the new version")]
    Start(#[source] RuntimeError),
    #[error("taking the snapshot of the state (nothing was changed)")]
    Snapshot(#[source] SnapshotError),
    #[error(transparent)]
    Script(#[from] ScriptError),
    #[error("restoring the snapshot failed: the state of `{name}` may be half migrated; its snapshot is {snapshot} (`nemoclaw rollback {name} --to {snapshot}` retries)")]
    Restore {
        name: String,
        snapshot: String,
        #[source]
        source: SnapshotError,
    },
    #[error("the upgrade journal of `{0}` names no snapshot although the scripts may have run: its state cannot be restored automatically (see `nemoclaw snapshots {0}`)")]
    NoSnapshot(String),
    #[error("`{0}` is not a deployed sandbox")]
    NotDeployed(String),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Home(#[from] HomeError),
}

/// How long each step of a committed upgrade took, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Timings {
    pub stop_ms: u64,
    pub snapshot_ms: u64,
    pub migrate_ms: u64,
    pub start_ms: u64,
    /// Old agent stopping → new agent healthy.
    pub downtime_ms: u64,
}

fn ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The scripts of an upgrade to `bp` (its migrations dir relative to `base`), `from` → its
/// version.
pub fn steps_for(bp: &Blueprint, base: &Path, from: u32) -> Result<Vec<Step>, ScriptError> {
    match &bp.migrations {
        Some(m) => engine::steps_in(&base.join(&m.dir), from, bp.metadata.version),
        None => Ok(Vec::new()),
    }
}

/// Runs `steps` on `state` (the state of `name`, at version `from`) with the limits of `bp`,
/// the blueprint they take it to: the one way scripts run, for an upgrade and its dry run.
pub fn run_scripts(
    state: &Path,
    name: &str,
    from: u32,
    bp: &Blueprint,
    steps: &[Step],
    log: &(dyn Fn(&str) + Sync),
) -> Result<RunReport, ScriptError> {
    let limits = bp
        .migrations
        .as_ref()
        .map(|m| m.limits.clone())
        .unwrap_or_default();
    let input = RunInput {
        name,
        from,
        to: bp.metadata.version,
        steps,
        limits: &limits,
    };
    engine::run(state, &input, log)
}

/// What an upgrade needs besides the plan's change.
pub(super) struct Upgrade<'a> {
    pub change: &'a Change,
    pub old: Deployed,
    pub steps: Vec<Step>,
    /// Start the new version (false for a sandbox the user stopped, and for `migrate`).
    pub start: bool,
    /// Record the new version as stopped by the user.
    pub stopped_after: bool,
}

/// Runs one upgrade as a transaction; on failure the old version is back and the error says
/// what failed.
pub(super) fn run(ctx: &Ctx<'_>, u: Upgrade<'_>) -> Result<Timings, UpgradeError> {
    let (home, rt) = (ctx.home, ctx.runtime);
    let mut j = begin(ctx, &u)?;
    let name = j.name.clone();
    let down = Instant::now();
    let mut t = Timings::default();
    if let Err(e) = rt.stop(&name) {
        journal::clear(home, &name)?;
        return Err(UpgradeError::Stop(e));
    }
    t.stop_ms = ms(down);
    j.enter(home, Phase::Snapshotting)?;
    let step = Instant::now();
    let snap = match take_snapshot(home, &name, j.from, &j) {
        Ok(s) => s,
        Err(e) => {
            let _ = undo::restart_old(home, rt, &j);
            journal::clear(home, &name)?;
            return Err(e);
        }
    };
    t.snapshot_ms = ms(step);
    j.snapshot = Some(snap.id.clone());
    j.enter(home, Phase::Migrating)?;
    match forward(ctx, &u, &mut j, &mut t) {
        Ok(()) => {
            t.downtime_ms = ms(down);
            commit(home, &j, u.desired(), &t)?;
            Ok(t)
        }
        Err(cause) => Err(undo::failed(ctx, &u, &mut j, cause)?),
    }
}

impl Upgrade<'_> {
    fn desired(&self) -> &Blueprint {
        self.change
            .after
            .as_ref()
            .expect("an upgrade has a desired blueprint")
    }
}

/// The journal of a starting upgrade, recorded before anything is touched.
fn begin(ctx: &Ctx<'_>, u: &Upgrade<'_>) -> Result<Journal, UpgradeError> {
    let (home, name) = (ctx.home, u.change.name.as_str());
    let j = Journal {
        format: JOURNAL_FORMAT,
        name: name.to_string(),
        from: u.old.version,
        to: u.desired().metadata.version,
        phase: Phase::Stopping,
        snapshot: None,
        was_running: ctx.runtime.is_running(name),
        old_record: read_text(&home.deployed_record(name))?,
        old_blueprint: read_text(&home.deployed_blueprint(name))?,
        started_at: journal::now(),
    };
    j.save(home)?;
    let steps: Vec<u32> = u.steps.iter().map(|s| s.version).collect();
    log::event(
        home,
        name,
        "upgrade-started",
        json!({"from": j.from, "to": j.to, "steps": steps}),
    );
    Ok(j)
}

fn take_snapshot(
    home: &Home,
    name: &str,
    version: u32,
    j: &Journal,
) -> Result<snapshot::Info, UpgradeError> {
    let state = home.state(name);
    if !state.exists() {
        crate::home::create_dir_private(&state)?;
    }
    let attachments: [(&str, &[u8]); 2] = [
        (SNAPSHOT_BLUEPRINT, j.old_blueprint.as_bytes()),
        (SNAPSHOT_RECORD, j.old_record.as_bytes()),
    ];
    snapshot::create(
        &home.snapshots(name),
        &state,
        &snapshot::Request {
            version,
            kind: Kind::Upgrade,
            attachments: &attachments,
            sqlite_backup: false,
        },
    )
    .map_err(UpgradeError::Snapshot)
}

/// The deployed blueprint and record of the version a snapshot belongs to, stored beside its
/// state (what `rollback` runs again).
pub const SNAPSHOT_BLUEPRINT: &str = "blueprint.yaml";
pub const SNAPSHOT_RECORD: &str = "deployed.json";

/// Scripts, then the new version recorded and started (health-gated).
fn forward(
    ctx: &Ctx<'_>,
    u: &Upgrade<'_>,
    j: &mut Journal,
    t: &mut Timings,
) -> Result<(), UpgradeError> {
    let (home, name) = (ctx.home, u.change.name.as_str());
    let new = u.desired();
    let step = Instant::now();
    let report = run_scripts(&home.state(name), name, j.from, new, &u.steps, &|line| {
        log::event(home, name, "print", json!({"message": line}))
    })?;
    t.migrate_ms = ms(step);
    log::event(
        home,
        name,
        "migrated",
        json!({"ran": report.ran, "ms": t.migrate_ms}),
    );
    j.enter(home, Phase::Starting)?;
    let step = Instant::now();
    ctx.record(u.change, u.stopped_after)
        .map_err(|e| UpgradeError::Start(Box::new(e)))?;
    if u.start {
        ctx.runtime.start(name).map_err(UpgradeError::Start)?;
        ctx.runtime
            .wait_healthy(name)
            .map_err(UpgradeError::Start)?;
    }
    t.start_ms = ms(step);
    Ok(())
}

fn commit(home: &Home, j: &Journal, new: &Blueprint, t: &Timings) -> Result<(), UpgradeError> {
    let name = j.name.as_str();
    let snapshot = j.snapshot.as_deref().unwrap_or_default();
    let keep = new
        .migrations
        .as_ref()
        .and_then(|m| m.keep)
        .unwrap_or(defaults::KEEP_SNAPSHOTS);
    journal::clear(home, name)?;
    let pruned = snapshot::prune(&home.snapshots(name), Kind::Upgrade, keep as usize)
        .unwrap_or_else(|e| {
            tracing::warn!(
                "pruning the snapshots of {name}: {}",
                crate::error_chain(&e)
            );
            Vec::new()
        });
    log::event(
        home,
        name,
        "upgrade-committed",
        json!({"to": new.metadata.version, "snapshot": snapshot, "pruned": pruned, "timings": t}),
    );
    Ok(())
}

fn read_text(path: &PathBuf) -> Result<String, UpgradeError> {
    std::fs::read_to_string(path).map_err(|source| {
        UpgradeError::Home(HomeError::Io {
            path: path.clone(),
            source,
        })
    })
}

/// The deployed record of `name`.
pub(super) fn deployed(home: &Home, name: &str) -> Result<Deployed, UpgradeError> {
    Inventory::load(home)?
        .get(name)
        .cloned()
        .ok_or_else(|| UpgradeError::NotDeployed(name.to_string()))
}
