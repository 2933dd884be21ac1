//! What a sandbox may do, as pure data: the layer that the blueprint, the sandbox and the
//! gateway all read, and that imports none of them.
//!
//! - [`types`]: the vocabulary of a blueprint's `network` section (the blueprint re-exports it).
//! - [`domain`]: allowed-domain rules (`*.example.com:8443`), parsed and matched.
//! - [`addr`]: CIDRs and the special-purpose ranges the SSRF guard refuses.
//! - [`presets`]: the built-in domain lists and the user's `presets/<name>.yaml`.
//! - [`network`]: the compiled [`network::NetworkPolicy`] and the decisions taken with it.
//! - [`inference`]: the `inference.local` name, the placeholder key, the agent's environment.
//! - [`syscalls`]: the syscall table that seccomp filters and `sandbox.seccomp.deny` use.

pub mod addr;
pub mod domain;
pub mod inference;
pub mod network;
pub mod presets;
pub mod syscalls;
pub mod types;

pub use inference::INFERENCE_HOST;
pub use network::{Decision, NetworkPolicy, PolicyError, PolicyHandle};
