//! The plugin manifest (`plugins/<name>/plugin.yaml`, `kind: Plugin`): how nemoclaw installs,
//! configures, starts, stops and probes one agent type. Built-in plugins (`plugins/` in the
//! repository, embedded in the binary) use exactly this format.
//!
//! ```yaml
//! apiVersion: nemoclaw.dev/v1
//! kind: Plugin
//! metadata: {name: hermes, description: Hermes Agent}
//! package: {name: hermes-agent, registry: pypi, defaultVersion: "0.19.0"}
//! setup:
//!   egress: [pypi]
//!   script: |
//!     python3 -m venv "$AGENT_DIR/venv"
//!     "$AGENT_DIR/venv/bin/pip" install "hermes-agent==$AGENT_VERSION"
//!   creates: venv/bin/hermes
//! start:
//!   command: [hermes, gateway, run]
//!   path: [venv/bin]
//!   env: {HERMES_HOME: /workspace/state/hermes}
//!   files:
//!     - {path: hermes/config.yaml, template: config.yaml.j2}
//! stop: {signal: SIGTERM, timeout: 10s, exitCodes: [0, 1]}
//! healthCheck: {http: {port: 8642, path: /health}}
//! state: [hermes]
//! ports: [8642]
//! ```

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::quantity::{ByteSize, Dur};
use super::types::HealthCheck;

mod check;
pub use check::check;

/// `kind:` of a plugin manifest.
pub const KIND_PLUGIN: &str = "Plugin";
/// The manifest's file name inside a plugin directory.
pub const MANIFEST: &str = "plugin.yaml";

/// One agent type: `plugin.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginManifest {
    /// Always `nemoclaw.dev/v1`.
    pub api_version: String,
    /// Always `Plugin`.
    pub kind: String,
    pub metadata: PluginMetadata,
    /// The package `setup` installs, pinned by the blueprint's `agent.version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<Package>,
    /// Installs the agent once per version, in a sandbox of its own, into the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<Setup>,
    /// What the sandbox runs.
    pub start: Start,
    #[serde(default)]
    pub stop: Stop,
    /// Used when the blueprint has no `lifecycle.healthCheck`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Paths under `/workspace/state` the agent owns (shown by `plugins show`, kept by
    /// snapshots like the rest of the state).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state: Vec<String>,
    /// TCP ports the agent serves inside the sandbox (for `network.ingress`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// Resources the agent needs, used where the blueprint sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<PluginResources>,
    /// Rhai hooks, relative to the plugin directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<Hooks>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginMetadata {
    /// The agent type blueprints name in `agent.type`; the directory's name.
    pub name: String,
    /// The manifest's own version (a plugin change with the same agent version restarts the
    /// agents that use it). Default 1.
    #[serde(default = "one")]
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Package {
    /// The package's name in its registry (`openclaw`, `hermes-agent`).
    pub name: String,
    pub registry: Registry,
    /// The version installed when the blueprint sets no `agent.version`.
    pub default_version: String,
}

/// Where a package comes from (the setup sandbox reaches it through the preset of that name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Registry {
    Npm,
    Pypi,
}

impl Registry {
    /// The egress preset that reaches this registry.
    pub fn preset(self) -> &'static str {
        match self {
            Registry::Npm => "npm",
            Registry::Pypi => "pypi",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Setup {
    /// The only egress the setup sandbox has: preset names (`npm`, `pypi`).
    #[serde(default)]
    pub egress: Vec<String>,
    /// A POSIX shell script (`sh -eu`) run in the setup sandbox. `AGENT_DIR` is the install
    /// directory (writable there, read-only in every agent sandbox, at the same path),
    /// `AGENT_VERSION` the version, `AGENT_PACKAGE` the package name.
    pub script: String,
    /// A path under `AGENT_DIR` that must exist when the script succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creates: Option<String>,
    /// Default 15m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
    /// Memory limit of the setup sandbox. Default 2Gi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Start {
    /// The agent's argv. The first word is looked up on the sandbox's `PATH`, which starts
    /// with `path`. Empty for the `command` plugin (the blueprint's `agent.command`). Each word
    /// is a template.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Directories under the install directory put first on `PATH` (in the agent and in
    /// `nemoclaw exec`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<String>,
    /// Environment of the agent; values are templates. The blueprint's `agent.env` wins.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Egress presets the agent needs at run time (added to the blueprint's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<String>,
    /// Config files rendered into the state directory before each start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<RenderedFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RenderedFile {
    /// Where, relative to `/workspace/state`.
    pub path: String,
    /// A template file (minijinja) relative to the plugin directory.
    pub template: String,
    /// `always` (default): rewritten at every start, so the blueprint stays the truth;
    /// `ifMissing`: written once, then the agent's.
    #[serde(default)]
    pub replace: Replace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Replace {
    #[default]
    Always,
    IfMissing,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Stop {
    /// The signal sent first. Default SIGTERM.
    #[serde(default = "sigterm")]
    pub signal: String,
    /// Time before SIGKILL, used where the blueprint sets no `lifecycle.stopTimeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
    /// Exit codes that mean a clean stop after the signal (Hermes exits 1 on SIGTERM).
    /// Default [0].
    #[serde(default = "zero")]
    pub exit_codes: Vec<i32>,
}

fn sigterm() -> String {
    "SIGTERM".into()
}
fn zero() -> Vec<i32> {
    vec![0]
}

impl Default for Stop {
    fn default() -> Self {
        Stop {
            signal: sigterm(),
            timeout: None,
            exit_codes: zero(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginResources {
    /// Memory limit where the blueprint sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    /// `/tmp` size where the blueprint sets no `sandbox.tmpSize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmp_size: Option<ByteSize>,
    /// Process and thread limit where the blueprint sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Hooks {
    /// A Rhai script defining `fn context(ctx)`: it gets the template context (a map) and
    /// returns a map whose entries are added to it (under `hook`), for logic a template cannot
    /// express.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

/// The built-in plugins' names.
pub const BUILTIN_NAMES: &[&str] = &["command", "demo", "openclaw", "hermes"];
