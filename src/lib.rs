//! nemoclaw: persistent AI agents in hardened Linux sandboxes, driven by declarative blueprints.
//!
//! The crate is organised the way the architecture document draws it:
//! - [`blueprint`]: the v1 blueprint model, loading with precise `file:line:col` errors, validation.
//! - [`home`]: the `$NEMOCLAW_HOME` layout, atomic writes and advisory locks.
//! - [`cli`]: one module per command; `main.rs` only parses and maps errors to exit codes.
//! - [`sandbox`], [`supervisor`], [`gateway`], [`reconcile`], [`source`], [`migrate`],
//!   [`plugin`], [`observe`]: the runtime, grown by the later issues.
//! - [`tls`]: the one TLS client setup (the inference gateway's backends, git over https).

// Diagnostics travel by value on error paths, which are cold: boxing them would only add noise.
#![allow(clippy::result_large_err)]

pub mod blueprint;
pub mod cli;
pub mod gateway;
pub mod home;
pub mod migrate;
pub mod observe;
pub mod plugin;
pub mod policy;
pub mod reconcile;
pub mod sandbox;
pub mod source;
pub mod supervisor;
pub mod sync;
pub mod tls;

/// Version string shown by `--version` and recorded in deployments.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// An error and its sources, joined with `: ` (hyper and rustls put the useful part deep in
/// the chain).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
