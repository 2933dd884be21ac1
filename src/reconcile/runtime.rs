//! The production [`Runtime`] of the reconciler: sandboxes started, stopped and reloaded
//! through their supervisors ([`crate::supervisor::launch`]), and the host checks an apply runs
//! before it changes anything.

use std::time::Duration;

use super::apply::{Runtime, RuntimeError};
use super::plan::{ChangeKind, Plan};
use crate::home::Home;
use crate::supervisor::{self, launch};

/// Sandboxes under detached supervisors, each start health-gated by `wait` (or the health
/// check's start period when longer).
pub struct SupervisorRuntime {
    pub home: Home,
    pub wait: Duration,
}

impl Runtime for SupervisorRuntime {
    fn start(&self, name: &str) -> Result<(), RuntimeError> {
        let path = self.home.deployed_blueprint(name);
        let entry = launch::load(&path)?;
        let plugin = crate::plugin::start::deployed(&self.home, name, &entry.blueprint)
            .map_err(supervisor::SupervisorError::from)
            .map_err(launch::LaunchError::from)?;
        launch::start(&self.home, &entry, &path, &plugin, self.wait)?;
        // Started is not up: an apply returns once the agent passes its health check.
        Ok(launch::wait_healthy(&self.home, name, self.wait)?)
    }

    fn stop(&self, name: &str) -> Result<(), RuntimeError> {
        launch::stop(&self.home, name, None)?;
        Ok(())
    }

    fn wait_healthy(&self, name: &str) -> Result<(), RuntimeError> {
        Ok(launch::wait_healthy(&self.home, name, self.wait)?)
    }

    fn reload(&self, name: &str) -> Result<(), RuntimeError> {
        Ok(launch::reload(&self.home, name)?)
    }

    fn is_running(&self, name: &str) -> bool {
        supervisor::is_running(&self.home, name)
    }
}

/// Sandboxes a plan would start whose host checks fail: nothing was changed.
#[derive(Debug, thiserror::Error)]
#[error("nothing was changed: {}", .problems.iter().map(|(n, e)| format!("{n}: {}", crate::error_chain(e.as_ref()))).collect::<Vec<_>>().join("; "))]
pub struct PreflightError {
    pub problems: Vec<(String, RuntimeError)>,
}

/// Host checks for every sandbox the plan starts (keys readable, network policy compiles), all
/// reported together, before anything changes.
pub fn preflight(home: &Home, plan: &Plan) -> Result<(), PreflightError> {
    let problems: Vec<(String, RuntimeError)> = plan
        .changes
        .iter()
        .filter(|c| {
            !matches!(c.kind, ChangeKind::Destroy | ChangeKind::Refused) && !c.stays_stopped
        })
        .filter_map(|c| c.after.as_ref().map(|bp| (c, bp)))
        .filter_map(|(c, bp)| {
            supervisor::gateway::preflight(home, bp)
                .err()
                .map(|e| (c.name.clone(), e.into()))
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(PreflightError { problems })
    }
}
