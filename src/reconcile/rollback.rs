//! The commands that move a sandbox's state by hand, under the apply lock:
//! `nemoclaw rollback NAME [--to ID]` (restore a snapshot and run the version that went with
//! it, held there until the source's blueprint changes) and `nemoclaw migrate NAME --to N`
//! (migrate a stopped sandbox in place, as one upgrade transaction without the start).

use std::path::Path;

use super::apply::{Ctx, Origins, Runtime};
use super::inventory::{self, blueprint_hash, Deployed, Hold, HoldKind};
use super::lifecycle::{lock, LOCK_TIMEOUT};
use super::plan::{Change, ChangeKind};
use super::upgrade::{
    self, deployed, recover, steps_for, Timings, Upgrade, UpgradeError, SNAPSHOT_BLUEPRINT,
    SNAPSHOT_RECORD,
};
use crate::blueprint::Blueprint;
use crate::home::{write_atomic, Home, HomeError};
use crate::migrate::{journal, log, snapshot};

#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error(transparent)]
    Upgrade(#[from] UpgradeError),
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error("`{0}` has no snapshots yet (they are taken before each upgrade, and by `lifecycle.checkpoint`)")]
    NoSnapshots(String),
    #[error("snapshot {id} holds no blueprint, so the version that went with it is unknown")]
    NoBlueprint { id: String },
    #[error("the blueprint stored in snapshot {id} cannot be read")]
    BadBlueprint {
        id: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("`{0}` is running: stop it first (`nemoclaw stop {0}`), or let `apply` upgrade it")]
    Running(String),
    #[error("`{name}` is at version {at}: --to {to} must be above it and at most {max}, the source's version")]
    BadTarget {
        name: String,
        at: u32,
        to: u32,
        max: u32,
    },
    #[error("starting the restored version")]
    Start(#[source] super::apply::RuntimeError),
}

/// What a rollback did.
#[derive(Debug, Clone)]
pub struct RolledBack {
    pub snapshot: snapshot::Info,
    pub from_version: u32,
    pub version: u32,
    pub started: bool,
}

/// Stops `name`, restores snapshot `to` (default the newest), and records and starts the
/// blueprint version that went with it. Unless that is the version already deployed, the
/// sandbox is held there until the source's blueprint changes.
pub fn rollback(
    home: &Home,
    rt: &dyn Runtime,
    name: &str,
    to: Option<&str>,
) -> Result<RolledBack, RollbackError> {
    let _lock = lock(home, LOCK_TIMEOUT, "nemoclaw rollback")?;
    recover(home, rt, name)?;
    let current = deployed(home, name)?;
    let dir = home.snapshots(name);
    let info = match to {
        Some(id) => snapshot::find(&dir, id)?,
        None => snapshot::list(&dir)?
            .pop()
            .ok_or_else(|| RollbackError::NoSnapshots(name.to_string()))?,
    };
    let (rec, yaml) = record_of(&info, &current)?;
    if rt.is_running(name) {
        rt.stop(name).map_err(UpgradeError::Stop)?;
    }
    upgrade::restore(home, name, &info.id)?;
    let mut rec = rec;
    rec.stopped = current.stopped;
    rec.hold = (rec.hash != current.hash).then(|| Hold {
        kind: HoldKind::RolledBack,
        desired_hash: current.hash.clone(),
        to_version: current.version,
        message: format!(
            "rolled back by the user to v{} (snapshot {}): left there until its blueprint changes (or `apply --replace {name}`)",
            rec.version, info.id
        ),
        at: journal::now(),
    });
    write_atomic(&home.deployed_blueprint(name), yaml.as_bytes(), 0o600)?;
    inventory::save_record(home, &rec).map_err(UpgradeError::from)?;
    inventory::bump_generation(home).map_err(UpgradeError::from)?;
    log::event(
        home,
        name,
        "rolled-back",
        serde_json::json!({"snapshot": info.id, "from": current.version, "to": rec.version}),
    );
    let started = !rec.stopped;
    if started {
        rt.start(name).map_err(RollbackError::Start)?;
    }
    Ok(RolledBack {
        from_version: current.version,
        version: rec.version,
        snapshot: info,
        started,
    })
}

/// The deployment record and blueprint text that go with a snapshot: its stored record, or
/// the current one with the stored blueprint.
fn record_of(
    info: &snapshot::Info,
    current: &Deployed,
) -> Result<(Deployed, String), RollbackError> {
    let yaml = snapshot::attachment(info, SNAPSHOT_BLUEPRINT)?.ok_or_else(|| {
        RollbackError::NoBlueprint {
            id: info.id.clone(),
        }
    })?;
    let yaml = String::from_utf8_lossy(&yaml).into_owned();
    let bad = |source: Box<dyn std::error::Error + Send + Sync>| RollbackError::BadBlueprint {
        id: info.id.clone(),
        source,
    };
    if let Some(bytes) = snapshot::attachment(info, SNAPSHOT_RECORD)? {
        let rec: Deployed = serde_json::from_slice(&bytes).map_err(|e| bad(Box::new(e)))?;
        return Ok((rec, yaml));
    }
    let bp: Blueprint =
        crate::blueprint::load::parse_str(&yaml).map_err(|d| bad(d.headline().into()))?;
    let mut rec = current.clone();
    rec.hash = blueprint_hash(&bp);
    rec.version = bp.metadata.version;
    rec.blueprint = bp;
    Ok((rec, yaml))
}

/// Migrates the state of the stopped sandbox `name` in place to version `to` of `desired`
/// (read from `base`): the upgrade transaction without the start. The record is the desired
/// blueprint at version `to`, so the next `apply` upgrades on from there.
pub fn migrate(
    home: &Home,
    rt: &dyn Runtime,
    desired: &Blueprint,
    base: &Path,
    to: u32,
) -> Result<Timings, RollbackError> {
    let name = desired.metadata.name.as_str();
    let _lock = lock(home, LOCK_TIMEOUT, "nemoclaw migrate")?;
    recover(home, rt, name)?;
    let old = deployed(home, name)?;
    if rt.is_running(name) {
        return Err(RollbackError::Running(name.to_string()));
    }
    check_target(name, old.version, to, desired.metadata.version)?;
    let mut bp = desired.clone();
    bp.metadata.version = to;
    let steps = steps_for(&bp, base, old.version).map_err(UpgradeError::from)?;
    let change = Change {
        name: name.to_string(),
        kind: ChangeKind::Upgrade,
        reasons: vec![format!("nemoclaw migrate --to {to}")],
        from_version: Some(old.version),
        to_version: Some(to),
        before: Some(old.blueprint.clone()),
        after: Some(bp),
        stays_stopped: true,
        migration: None,
        install: None,
    };
    let mut origins = Origins::default();
    origins
        .by_name
        .insert(name.to_string(), (old.source.clone(), base.to_path_buf()));
    let ctx = Ctx::new(home, rt, &origins);
    let stopped = old.stopped;
    Ok(upgrade::run(
        &ctx,
        Upgrade {
            change: &change,
            old,
            steps,
            start: false,
            stopped_after: stopped,
        },
    )?)
}

/// `--to` must move the sandbox forward, at most to the source's version.
pub fn check_target(name: &str, at: u32, to: u32, max: u32) -> Result<(), RollbackError> {
    if to <= at || to > max {
        return Err(RollbackError::BadTarget {
            name: name.to_string(),
            at,
            to,
            max,
        });
    }
    Ok(())
}
