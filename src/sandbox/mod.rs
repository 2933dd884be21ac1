//! The sandbox: namespaces, pivot_root, seccomp, cgroups, and the sealed network namespace.

pub mod network;
pub mod syscalls;
