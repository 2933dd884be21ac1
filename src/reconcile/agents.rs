//! The agents a plan starts, seen through their plugins: which installs a plan needs (shown
//! by `plan`), the install phase `apply` runs before it changes anything (so a version that
//! does not exist fails with every sandbox untouched), and the plugin saved next to each
//! deployed blueprint (`run/<name>/plugin/`).

use crate::blueprint::types::Blueprint;
use crate::home::Home;
use crate::plugin::install::{self, InstallState};
use crate::plugin::registry::Plugin;
use crate::plugin::start::{self, StartError};

use super::apply::Origins;
use super::plan::{AgentInstall, Change, ChangeKind, Plan};

/// An install that failed: nothing was changed.
#[derive(Debug, thiserror::Error)]
#[error("nothing was changed: sandbox `{name}`")]
pub struct InstallPhaseError {
    pub name: String,
    #[source]
    pub source: StartError,
}

/// Whether `c` starts its agent (so its install must be in place).
fn starts(c: &Change) -> bool {
    !matches!(c.kind, ChangeKind::Destroy | ChangeKind::Refused) && !c.stays_stopped
}

/// The plugin of a desired blueprint: from its source directory, the home, or built in.
pub fn plugin_for(
    home: &Home,
    name: &str,
    bp: &Blueprint,
    origins: &Origins,
) -> Result<Plugin, StartError> {
    let base = origins.by_name.get(name).map(|(_, b)| b.as_path());
    start::resolve(home, bp, base)
}

/// Fills in `install` on each change that needs its agent installed first. A plugin that
/// cannot be found or read becomes a refused change's reason.
pub fn plan_installs(home: &Home, plan: &mut Plan, origins: &Origins) {
    for c in plan.changes.iter_mut().filter(|c| starts(c)) {
        let Some(bp) = &c.after else { continue };
        let plugin = match plugin_for(home, &c.name, bp, origins) {
            Ok(p) => p,
            Err(e) => {
                c.kind = ChangeKind::Refused;
                c.reasons.push(crate::error_chain(&e));
                continue;
            }
        };
        let m = &plugin.manifest;
        let version = install::version_of(bp, m);
        let reinstall = match install::state(home, m, &version) {
            Ok(InstallState::Needed { reinstall, .. }) => reinstall,
            Ok(_) => continue,
            Err(e) => {
                c.kind = ChangeKind::Refused;
                c.reasons.push(crate::error_chain(&e));
                continue;
            }
        };
        c.install = Some(AgentInstall {
            plugin: m.metadata.name.clone(),
            version: version.clone(),
            what: install::describe(m, &version),
            reinstall,
            egress: m
                .setup
                .as_ref()
                .map(|s| s.egress.clone())
                .unwrap_or_default(),
        });
    }
}

/// Installs every agent the plan starts that is not installed, one plugin and version at a
/// time, before any sandbox changes. `progress` gets `(what, line)` for each line of setup
/// output.
pub fn install_all(
    home: &Home,
    plan: &Plan,
    origins: &Origins,
    progress: &mut dyn FnMut(&str, &str),
) -> Result<(), InstallPhaseError> {
    for c in plan.changes.iter().filter(|c| starts(c)) {
        let Some(bp) = &c.after else { continue };
        let err = |source| InstallPhaseError {
            name: c.name.clone(),
            source,
        };
        let plugin = plugin_for(home, &c.name, bp, origins).map_err(err)?;
        let m = &plugin.manifest;
        let version = install::version_of(bp, m);
        let what = install::describe(m, &version);
        install::ensure(home, m, &version, &mut |line| progress(&what, line))
            .map_err(|e| err(e.into()))?;
    }
    Ok(())
}
