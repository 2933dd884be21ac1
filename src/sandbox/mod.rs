//! The sandbox: namespaces, pivot_root, seccomp, cgroups, and the sealed network namespace.
//!
//! - [`spec`]: blueprint -> [`spec::SandboxSpec`] (pure).
//! - [`seccomp`]: the filters (pure build, async-signal-safe install).
//! - [`cgroups`]: limits as data per cgroup version (pure), and the groups themselves.
//! - [`mod@spawn`]: the parent's side of starting a sandbox, with the [`spawn::NetworkSetup`] hook;
//!   [`child`]: the child's side up to the exec of [`init`], the sandbox's pid 1.
//! - [`ids`]: per-sandbox host uid/gid ranges.

pub mod cgroups;
pub mod child;
pub mod enter;
pub mod ids;
pub mod init;
pub mod instance;
pub mod seccomp;
pub mod spawn;
pub mod spec;

pub use spawn::{spawn, LoopbackOnly, NetnsHandle, NetworkSetup, Sandbox, SpawnOptions, Stdio};
pub use spec::{SandboxSpec, NEMOCLAW_BIN, STATE_PATH};
