//! Agent plugins: the built-in agent types and user plugins (`plugins/<name>/plugin.yaml`).
//!
//! - [`demo`]: the quickstart's built-in agent.

pub mod demo;
