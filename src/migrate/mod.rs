//! State migrations: Rhai scripts run on an agent's state during an upgrade, the snapshots that
//! make an upgrade all-or-nothing, and the journal that finishes an interrupted one. Validation
//! of migration scripts (names and compilation) lives in `blueprint::validate`; the upgrade
//! transaction that drives all this lives in `reconcile::upgrade`.
//!
//! - [`confine`] opens the state dir once and resolves every path beneath it (openat2
//!   `RESOLVE_BENEATH`); its `file` part reads and writes files atomically, its `tree` part
//!   lists, copies, renames and removes without following symlinks into directories.
//! - [`engine`] runs `vN.rhai` scripts with limits; [`api`] is the `state` object scripts see,
//!   [`values`] converts JSON/YAML/TOML to Rhai values and [`sqlite`] is the `db` object (one
//!   transaction per database per script).
//! - [`tree`] copies (FICLONE or a plain copy) and hashes state trees; [`snapshot`] creates,
//!   lists, verifies, restores and prunes snapshots.
//! - [`preview`] compares two state trees for the plan's dry run.
//! - [`journal`] records each step of an upgrade before it runs; [`log`] is the upgrade log.

pub mod api;
pub mod confine;
pub mod engine;
pub mod journal;
pub mod log;
pub mod preview;
pub mod snapshot;
pub mod sqlite;
pub mod tree;
pub mod values;
