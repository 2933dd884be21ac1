//! Agent plugins at run time: which plugin an agent type names, its install in the cache, and
//! what it adds to a sandbox. The manifest's model and checks are `blueprint::plugin`.
//!
//! - `context`: the template context (pure).
//! - `render`: the plugin's templates and hook → command, environment, files.
//! - `launch`: blueprint + plugin → the sandbox's command, environment, files, stop plan, and
//!   the effective blueprint (the plugin's defaults filled in).
//! - `install`: the agent's install in the cache, by its setup in a sandbox of its own.
//! - `start`: one start of an agent: the deployed plugin, its install checked, its files
//!   written into the state directory.
//! - [`demo`]: the quickstart's built-in agent.
//! - [`fetch`]: `__npm-fetch`, one npm package fetched, verified and unpacked without npm.

pub mod context;
pub mod demo;
pub mod fetch;
pub mod install;
pub mod launch;
pub mod registry;
pub mod render;
pub mod start;
