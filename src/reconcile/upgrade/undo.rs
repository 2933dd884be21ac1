//! The way back: an upgrade that failed is rolled back (state restored from its snapshot, the
//! old version's record and blueprint put back, the old version started again, the failed
//! version held), and an upgrade interrupted by a crash is rolled back by [`recover`] from
//! what its journal holds.

use serde_json::json;

use super::{Upgrade, UpgradeError};
use crate::home::{write_atomic, Home};
use crate::migrate::journal::{self, Journal, Phase};
use crate::migrate::{log, snapshot};
use crate::reconcile::apply::{Ctx, Runtime};
use crate::reconcile::inventory::{self, Deployed, Hold, HoldKind};

/// Rolls back an upgrade whose scripts or start failed with `cause`, holds the failed version,
/// and says what became of the old one.
pub(super) fn failed(
    ctx: &Ctx<'_>,
    u: &Upgrade<'_>,
    j: &mut Journal,
    cause: UpgradeError,
) -> Result<UpgradeError, UpgradeError> {
    let (name, from, to) = (j.name.clone(), j.from, j.to);
    let hold = Hold {
        kind: HoldKind::UpgradeFailed,
        desired_hash: inventory::blueprint_hash(u.desired()),
        to_version: to,
        message: format!(
            "upgrade to v{to} failed and was rolled back ({}): fix the blueprint or its scripts, or `nemoclaw apply --retry {name}`",
            crate::error_chain(&cause)
        ),
        at: journal::now(),
    };
    let start = j.was_running && u.start;
    let snapshot = j.snapshot.clone().unwrap_or_default();
    let restarted = match roll_back(ctx.home, ctx.runtime, j, Some(hold), start)? {
        None if start => "runs again".to_string(),
        None => "is back (stopped)".to_string(),
        Some(e) => format!("is back but did not start again ({e})"),
    };
    Ok(UpgradeError::RolledBack {
        name,
        from,
        to,
        snapshot,
        restarted,
        cause: Box::new(cause),
    })
}

/// Starts the old version again if it was running; says why not when it cannot.
pub(super) fn restart_old(home: &Home, rt: &dyn Runtime, j: &Journal) -> Option<String> {
    if !j.was_running {
        return None;
    }
    let e = rt.start(&j.name).err()?;
    let error = crate::error_chain(e.as_ref());
    log::event(home, &j.name, "restart-failed", json!({"error": error}));
    Some(error)
}

/// Stops whatever runs, restores the snapshot (when the state may have changed), puts back the
/// old record and blueprint (with `hold`), forgets the journal, and starts the old version when
/// `start`; returns why that start failed, if it did.
fn roll_back(
    home: &Home,
    rt: &dyn Runtime,
    j: &mut Journal,
    hold: Option<Hold>,
    start: bool,
) -> Result<Option<String>, UpgradeError> {
    let name = j.name.clone();
    let touched = j.phase.state_touched();
    j.enter(home, Phase::RollingBack)?;
    log::event(
        home,
        &name,
        "rollback-started",
        json!({"from": j.to, "to": j.from}),
    );
    if rt.is_running(&name) {
        rt.stop(&name).map_err(UpgradeError::Stop)?;
    }
    if touched {
        let id = j
            .snapshot
            .clone()
            .ok_or_else(|| UpgradeError::NoSnapshot(name.clone()))?;
        restore(home, &name, &id)?;
    }
    put_back_old(home, j, hold)?;
    journal::clear(home, &name)?;
    log::event(
        home,
        &name,
        "rollback-finished",
        json!({"version": j.from, "restored": touched}),
    );
    Ok(if start {
        restart_old(home, rt, j)
    } else {
        None
    })
}

/// Restores snapshot `id` into the state dir of `name`.
pub(in crate::reconcile) fn restore(home: &Home, name: &str, id: &str) -> Result<(), UpgradeError> {
    let failed = |source| UpgradeError::Restore {
        name: name.to_string(),
        snapshot: id.to_string(),
        source,
    };
    let info = snapshot::find(&home.snapshots(name), id).map_err(failed)?;
    snapshot::restore(&info, &home.state(name)).map_err(failed)
}

/// Writes the old version's record (with `hold`) and blueprint back.
fn put_back_old(home: &Home, j: &Journal, hold: Option<Hold>) -> Result<(), UpgradeError> {
    let name = &j.name;
    write_atomic(
        &home.deployed_blueprint(name),
        j.old_blueprint.as_bytes(),
        0o600,
    )?;
    match serde_json::from_str::<Deployed>(&j.old_record) {
        Ok(mut rec) => {
            rec.hold = hold;
            inventory::save_record(home, &rec)?;
        }
        Err(_) => write_atomic(&home.deployed_record(name), j.old_record.as_bytes(), 0o600)?,
    }
    inventory::bump_generation(home)?;
    Ok(())
}

/// What [`recover`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub name: String,
    pub from: u32,
    pub to: u32,
    pub phase: Phase,
    /// Whether the state was restored from the snapshot (false: the scripts had not run).
    pub restored: bool,
}

/// Finishes the rollback of an interrupted upgrade of `name`, if there is one: the state is
/// restored, the old version's record and blueprint are back, nothing is started.
pub fn recover(
    home: &Home,
    rt: &dyn Runtime,
    name: &str,
) -> Result<Option<Recovered>, UpgradeError> {
    let Some(mut j) = journal::read(home, name)? else {
        return Ok(None);
    };
    let phase = j.phase;
    log::event(
        home,
        name,
        "interrupted-upgrade-found",
        json!({"from": j.from, "to": j.to, "phase": phase}),
    );
    roll_back(home, rt, &mut j, None, false)?;
    Ok(Some(Recovered {
        name: name.to_string(),
        from: j.from,
        to: j.to,
        phase,
        restored: phase.state_touched(),
    }))
}

/// [`recover`] for every sandbox with a journal; run under the apply lock before planning.
pub fn recover_all(
    home: &Home,
    rt: &dyn Runtime,
) -> Vec<(String, Result<Option<Recovered>, UpgradeError>)> {
    journal::pending(home)
        .into_iter()
        .map(|name| {
            let r = recover(home, rt, &name);
            (name, r)
        })
        .collect()
}
