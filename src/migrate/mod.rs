//! State migrations: Rhai scripts run on a snapshot of an agent's state during an upgrade.
//! Validation of migration scripts (names and compilation) lives in `blueprint::validate`.
//! - [`preview`]: what a migration changed, the diff of two state trees shown by `plan`.

pub mod preview;
