//! Agent plugins: the built-in agent types and user plugins (`plugins/<name>/plugin.yaml`).
//!
//! - [`demo`]: the quickstart's built-in agent.
//! - [`fetch`]: `__npm-fetch`, one npm package fetched, verified and unpacked without npm.

pub mod demo;
pub mod fetch;
