//! The sandbox: namespaces, pivot_root, seccomp, cgroups, and the sealed network namespace.
//!
//! - [`spec`]: blueprint -> [`spec::SandboxSpec`] (pure).
//! - [`seccomp`]: the filters (pure build, async-signal-safe install).
//! - [`cgroups`]: limits as data per cgroup version (pure), and the groups themselves.

pub mod cgroups;
pub mod network;
pub mod seccomp;
pub mod spec;
pub mod syscalls;
