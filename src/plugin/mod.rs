//! Agent plugins: the built-in agent types and user plugins (`plugins/<name>/plugin.yaml`).
//!
//! - [`demo`]: the quickstart's built-in agent.

pub mod demo;

/// Agent types that nemoclaw knows without any plugin.
pub const BUILTIN_AGENT_TYPES: &[&str] = &["command", "demo", "openclaw", "hermes"];
