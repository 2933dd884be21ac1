//! Live facts about deployed sandboxes, read without disturbing them: a supervisor is alive
//! exactly while it holds the lock on its pid file; what it reports on its control socket says
//! whether it gave up.

use super::inventory::Deployed;
use super::plan::Live;
use crate::home::Home;
use crate::supervisor::{self, client::Client, protocol::Request, protocol::State};

/// What is known of a deployed sandbox right now.
pub fn observe(home: &Home, rec: &Deployed) -> Live {
    if !supervisor::is_running(home, &rec.name) {
        return Live::Down;
    }
    let status = Client::connect(&home.control_socket(&rec.name))
        .and_then(|mut c| c.request(Request::Status))
        .ok()
        .and_then(|r| r.status);
    match status {
        Some(s) if s.state == State::Failed => Live::GaveUp {
            crashes: s.recent_crashes,
        },
        Some(s) => Live::Running {
            healthy: Some(matches!(s.state, State::Running)),
            hash: None,
        },
        None => Live::Running {
            healthy: None,
            hash: None,
        },
    }
}
