//! Live facts about deployed sandboxes, read without disturbing them: a supervisor is alive
//! exactly while it holds the lock on its pid file.

use std::time::Duration;

use super::inventory::Deployed;
use super::plan::Live;
use crate::home::{FileLock, Home, HomeError};

/// Whether the supervisor of `name` is alive (its pid file is locked by someone).
pub fn supervisor_alive(home: &Home, name: &str) -> bool {
    let p = home.run_dir(name).join("supervisor.pid");
    if !p.exists() {
        return false;
    }
    matches!(
        FileLock::acquire(&p, "probe", Duration::ZERO),
        Err(HomeError::Locked { .. })
    )
}

/// What is known of a deployed sandbox right now.
pub fn observe(home: &Home, rec: &Deployed) -> Live {
    if supervisor_alive(home, &rec.name) {
        Live::Running {
            healthy: None,
            hash: None,
        }
    } else {
        Live::Down
    }
}
