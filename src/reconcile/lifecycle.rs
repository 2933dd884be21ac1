//! The lifecycle commands as the reconciler owns them: `start`, `stop`, `restart` and `destroy`
//! act under the apply lock and keep the inventory true. A sandbox the user stopped is recorded
//! as stopped, so neither `apply` nor `watch` brings it back until `start` (or
//! `apply --replace NAME`) does.

use std::path::Path;
use std::time::Duration;

use super::inventory::{self, Inventory, InventoryError};
use crate::home::{FileLock, Home, HomeError};
use crate::plugin::start as agent_start;
use crate::supervisor::launch::{self, LaunchError, Started, Stopped};

/// How long lifecycle commands wait for a running apply.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error(transparent)]
    Upgrade(#[from] super::upgrade::UpgradeError),
    #[error("`{0}` is not a deployed sandbox (see `nemoclaw status`)")]
    NotDeployed(String),
    #[error(transparent)]
    Agent(#[from] agent_start::StartError),
    #[error("`{0}` is not a deployed sandbox: nemoclaw only destroys what it deployed (see `nemoclaw status`)")]
    NotDeployedForDestroy(String),
}

/// Takes the apply lock (`what` names the holder for whoever waits), naming its holder when
/// it is taken.
pub fn lock(home: &Home, timeout: Duration, what: &str) -> Result<FileLock, HomeError> {
    home.ensure()?;
    FileLock::acquire(&home.apply_lock(), what, timeout)
}

/// Marks a deployed sandbox stopped (or not); a no-op for names outside the inventory.
fn mark_stopped(home: &Home, name: &str, stopped: bool) -> Result<(), InventoryError> {
    let inv = Inventory::load(home)?;
    if let Some(rec) = inv.get(name).filter(|r| r.stopped != stopped) {
        let mut rec = rec.clone();
        rec.stopped = stopped;
        inventory::save_record(home, &rec)?;
        inventory::bump_generation(home)?;
    }
    Ok(())
}

/// `start BLUEPRINT.yaml|NAME`: a deployed NAME starts from its deployed blueprint and is no
/// longer recorded as stopped; anything else starts directly (`nemoclaw run`'s detached twin).
/// Returns the sandbox's name and what happened.
pub fn start(
    home: &Home,
    target: &str,
    wait: Duration,
    progress: &mut dyn FnMut(&str),
) -> Result<(String, Started), LifecycleError> {
    let _lock = lock(home, LOCK_TIMEOUT, "nemoclaw start")?;
    let deployed = Inventory::load(home)?.get(target).is_some() && !Path::new(target).is_file();
    let path = if deployed {
        home.deployed_blueprint(target)
    } else {
        launch::resolve(home, target)?
    };
    if deployed {
        // An upgrade interrupted by a crash is rolled back before anything starts.
        let rt = super::runtime::SupervisorRuntime {
            home: home.clone(),
            wait,
        };
        super::upgrade::recover(home, &rt, target)?;
    }
    let entry = launch::load(&path)?;
    let name = entry.blueprint.metadata.name.clone();
    let plugin = if deployed {
        agent_start::deployed(home, &name, &entry.blueprint)?
    } else {
        agent_start::resolve(home, &entry.blueprint, path.parent())?
    };
    // A cache that lost the install installs again here, with its output shown.
    agent_start::install_and_prepare(home, &entry.blueprint, &plugin, progress)?;
    let started = launch::start(home, &entry, &path, &plugin, wait)?;
    if deployed {
        mark_stopped(home, &name, false)?;
    }
    Ok((name, started))
}

/// `stop NAME`: stops the sandbox and records that the user wants it stopped.
pub fn stop(home: &Home, name: &str, timeout: Option<Duration>) -> Result<Stopped, LifecycleError> {
    let _lock = lock(home, LOCK_TIMEOUT, "nemoclaw stop")?;
    let stopped = launch::stop(home, name, timeout)?;
    mark_stopped(home, name, true)?;
    Ok(stopped)
}

/// `restart NAME`: stop, then start from the deployed blueprint.
pub fn restart(
    home: &Home,
    name: &str,
    wait: Duration,
) -> Result<(Stopped, Started), LifecycleError> {
    let _lock = lock(home, LOCK_TIMEOUT, "nemoclaw restart")?;
    if Inventory::load(home)?.get(name).is_none() {
        return Err(LifecycleError::NotDeployed(name.to_string()));
    }
    let started = launch::restart(home, name, wait)?;
    mark_stopped(home, name, false)?;
    Ok(started)
}

/// `destroy NAME`: stops the sandbox and removes it from the inventory; its state is deleted
/// only with `delete_state`. Logs are kept.
pub fn destroy(home: &Home, name: &str, delete_state: bool) -> Result<Stopped, LifecycleError> {
    let _lock = lock(home, LOCK_TIMEOUT, "nemoclaw destroy")?;
    if Inventory::load(home)?.get(name).is_none() {
        return Err(LifecycleError::NotDeployedForDestroy(name.to_string()));
    }
    let stopped = launch::stop(home, name, None)?;
    inventory::remove_record(home, name)?;
    inventory::bump_generation(home)?;
    launch::remove_run_files(home, name);
    let state = home.state(name);
    if delete_state && state.exists() {
        std::fs::remove_dir_all(&state).map_err(|source| HomeError::Io {
            path: state.clone(),
            source,
        })?;
    }
    Ok(stopped)
}
