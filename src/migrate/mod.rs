//! State migrations: Rhai scripts run on a snapshot of an agent's state during an upgrade.
//! Validation of migration scripts (names and compilation) lives in `blueprint::validate`.
//! `tree` copies and hashes a state tree (reflink where the filesystem allows); `snapshot`
//! takes, lists, restores and prunes snapshots of a state dir.

pub mod snapshot;
pub mod tree;
