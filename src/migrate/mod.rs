//! State migrations: Rhai scripts run on a snapshot of an agent's state during an upgrade.
//! Validation of migration scripts (names and compilation) lives in `blueprint::validate`.

pub mod journal;
pub mod log;
