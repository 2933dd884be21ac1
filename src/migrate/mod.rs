//! State migrations: Rhai scripts run on a snapshot of an agent's state during an upgrade.
//! Validation of migration scripts (names and compilation) lives in `blueprint::validate`.
//!
//! The script engine: [`confine`] opens the state dir once and resolves every path beneath it
//! (openat2 `RESOLVE_BENEATH`); [`confine_file`] reads and atomically writes files;
//! [`confine_tree`] lists, copies, renames and removes without following symlinks into
//! directories; [`engine`] runs `vN.rhai` scripts in engines that [`engine_setup`] builds with
//! the blueprint's limits; [`api`] is the `state` object scripts see, [`values`] converts
//! JSON/YAML/TOML to Rhai values and [`sqlite`] is the `db` object (one transaction per
//! database per script).

pub mod api;
pub mod confine;
pub mod confine_file;
pub mod confine_tree;
pub mod engine;
pub mod engine_setup;
pub mod sqlite;
pub mod values;
