//! The reconciler: the inventory of what nemoclaw deployed, planning (a pure function from
//! desired x actual to actions), executing plans through a [`apply::Runtime`], the lifecycle
//! commands under the apply lock, and the watch loop.
//!
//! - [`prepare`]: load the source, read the inventory and live facts, plan.
//! - [`plan`] (pure), [`render`], [`saved`]: the plan, shown and saved.
//! - [`apply`]: executing a plan, crash-safe, behind the [`apply::Runtime`] seam;
//!   [`runtime`]: the production runtime (supervisors) and the pre-apply host checks.
//! - [`upgrade`]: the upgrade transaction (stop, snapshot, migrate, start, health, commit or
//!   roll back) and the recovery of an interrupted one; [`dry_run`]: the migrations run on a
//!   scratch copy for `plan`; [`rollback`]: `rollback` and `migrate` by hand.
//! - [`agents`]: the installs a plan needs, apply's install phase (before any change), the
//!   plugin saved with each deployed blueprint.
//! - [`lifecycle`]: start/stop/restart/destroy under the apply lock, inventory kept true.
//! - [`status`]: what each deployed sandbox is doing, for `nemoclaw status`.
//! - [`watch`]: the reconcile loop (file changes, git polls, resyncs).

pub mod agents;
pub mod apply;
pub mod dry_run;
pub mod inventory;
pub mod lifecycle;
pub mod live;
pub mod plan;
pub mod prepare;
pub mod render;
pub mod rollback;
pub mod runtime;
pub mod saved;
pub mod status;
pub mod upgrade;
pub mod watch;

#[cfg(test)]
mod fake_runtime;
#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod upgrade_tests;
