//! An in-memory [`Runtime`] for the reconciler's tests: it records every call and keeps the set
//! of "running" sandboxes; starts and health checks fail for the names it is told to fail.

use std::collections::BTreeSet;
use std::sync::Mutex;

use super::apply::{Runtime, RuntimeError};
use super::inventory::{Deployed, Inventory};
use super::plan::Live;
use crate::home::Home;

#[derive(Default)]
pub struct Fake {
    pub running: Mutex<BTreeSet<String>>,
    pub calls: Mutex<Vec<String>>,
    pub fail_start: BTreeSet<String>,
    pub unhealthy: BTreeSet<String>,
}

impl Fake {
    pub fn calls(&self) -> Vec<String> {
        crate::sync::lock(&self.calls).clone()
    }

    /// The inventory of `home`, each record live as this runtime sees it.
    pub fn actual(&self, home: &Home) -> Vec<(Deployed, Live)> {
        Inventory::load(home)
            .expect("a readable inventory")
            .records
            .into_iter()
            .map(|r| {
                let live = if self.is_running(&r.name) {
                    Live::Running {
                        healthy: Some(true),
                        hash: None,
                    }
                } else {
                    Live::Down
                };
                (r, live)
            })
            .collect()
    }

    fn call(&self, what: String) {
        crate::sync::lock(&self.calls).push(what);
    }
}

impl Runtime for Fake {
    fn start(&self, name: &str) -> Result<(), RuntimeError> {
        self.call(format!("start {name}"));
        if self.fail_start.contains(name) {
            return Err("agent exited with 1".into());
        }
        crate::sync::lock(&self.running).insert(name.into());
        Ok(())
    }
    fn stop(&self, name: &str) -> Result<(), RuntimeError> {
        self.call(format!("stop {name}"));
        crate::sync::lock(&self.running).remove(name);
        Ok(())
    }
    fn wait_healthy(&self, name: &str) -> Result<(), RuntimeError> {
        if self.unhealthy.contains(name) {
            return Err("its health check fails".into());
        }
        Ok(())
    }
    fn reload(&self, name: &str) -> Result<(), RuntimeError> {
        self.call(format!("reload {name}"));
        Ok(())
    }
    fn is_running(&self, name: &str) -> bool {
        crate::sync::lock(&self.running).contains(name)
    }
}
