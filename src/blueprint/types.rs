//! The blueprint v1 types (`apiVersion: nemoclaw.dev/v1`, `kind: Blueprint`).
//!
//! These types are the whole v1 schema: every later capability (sandbox, network, gateway,
//! reconciler, migrations, agents) reads its settings from here, so a blueprint that is valid
//! today stays valid. Unknown fields are errors everywhere (`deny_unknown_fields`); defaults are
//! spelled out in [`defaults`] and documented in the generated JSON Schema.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::credential::CredentialRef;
use super::quantity::{ByteSize, Cpu, Dur};
use crate::policy::types::is_default;
pub use crate::policy::types::{
    Dns, DnsResolver, DomainRule, DomainWithPorts, Egress, Ingress, Network,
};

fn is_true(v: &bool) -> bool {
    *v
}

/// The only `apiVersion` this release reads.
pub const API_VERSION: &str = "nemoclaw.dev/v1";
/// The `kind` of a blueprint document.
pub const KIND_BLUEPRINT: &str = "Blueprint";

/// A blueprint: one agent in one sandbox, declared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "nemoclaw Blueprint (nemoclaw.dev/v1)")]
pub struct Blueprint {
    /// Always `nemoclaw.dev/v1`.
    #[schemars(extend("const" = "nemoclaw.dev/v1"))]
    pub api_version: String,
    /// Always `Blueprint`.
    #[schemars(extend("const" = "Blueprint"))]
    pub kind: String,
    pub metadata: Metadata,
    #[serde(default, skip_serializing_if = "is_default")]
    pub agent: Agent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference: Option<Inference>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub network: Network,
    #[serde(default, skip_serializing_if = "is_default")]
    pub filesystem: Filesystem,
    #[serde(default, skip_serializing_if = "is_default")]
    pub resources: Resources,
    #[serde(default, skip_serializing_if = "is_default")]
    pub lifecycle: Lifecycle,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrations: Option<Migrations>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub sandbox: SandboxSettings,
    /// Names of blueprints that must be running (and healthy) before this one starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// When true, the reconciler leaves this sandbox exactly as it is.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// The sandbox name: a DNS label (lower-case letters, digits, `-`; at most 63 characters),
    /// unique across the source. Also the sandbox's hostname.
    pub name: String,
    /// The blueprint's version, an integer from 1. Raising it is an upgrade: the agent's state
    /// is snapshotted and migrated by `migrations.dir/v<N>.rhai`.
    #[schemars(range(min = 1))]
    pub version: u32,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Which agent runs in the sandbox.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Agent {
    /// A built-in type (`openclaw`, `hermes`, `command`, `demo`) or a plugin in the source's
    /// `plugins/<type>/plugin.yaml` or the home's. Default: `command` when `command` is set,
    /// else `$NEMOCLAW_AGENT`, else `openclaw` (`hermes` when invoked as `nemohermes`).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The program to run, as a path inside the sandbox. Required for `type: command`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment for the agent. Values that look like secrets are refused: declare them in
    /// `secrets` instead.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The agent package version (e.g. `2026.9.6` for OpenClaw), installed by its plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Secrets the agent itself must hold (e.g. a bot token). These DO enter the sandbox, as the
    /// named environment variables; prefer gateway-held credentials wherever possible.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<AgentSecret>,
    /// Working directory inside the sandbox. Default `/workspace/state`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentSecret {
    /// The environment variable name the agent sees.
    pub name: String,
    /// Where nemoclaw reads it on the host.
    pub from: CredentialRef,
}

/// Routed inference: the models the agent may call and how the gateway reaches them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Inference {
    pub backends: Vec<Backend>,
    /// Routes from a model name or prefix to backends (tried in order on failure). Without
    /// routes, a single backend serves every allowed model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// Models the agent may request. An entry ending in `*` allows a prefix (`nim/*`).
    pub allowed_models: Vec<String>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub limits: InferenceLimits,
    /// Rhai guard scripts run on every request (and optionally response).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guards: Vec<Guard>,
    /// The built-in guard that refuses requests carrying a credential the gateway holds and
    /// redacts common secret shapes. Default true.
    #[serde(default = "defaults::yes", skip_serializing_if = "is_true")]
    pub secret_guard: bool,
    /// Log request and response bodies (credentials redacted). Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub log_bodies: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backend {
    /// Referenced by routes.
    pub name: String,
    pub kind: BackendKind,
    /// Base URL of the API (e.g. `https://integrate.api.nvidia.com/v1`). Not used by `mock`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The key the gateway injects; the agent never sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<CredentialRef>,
    /// Per-request timeout for this backend. Default 60s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
    /// Settings of the built-in mock backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mock: Option<MockSettings>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Any OpenAI-compatible server: NVIDIA NIM and API catalog, OpenAI, vLLM, Ollama, llama.cpp.
    Openai,
    /// The Anthropic Messages API.
    Anthropic,
    /// The built-in deterministic mock, for the quickstart and tests.
    Mock,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MockSettings {
    /// A YAML or JSON file of scripted replies, relative to the blueprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replies: Option<PathBuf>,
    /// Added latency per response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Dur>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Route {
    /// A model name, or a prefix ending in `/` or `*` (`nim/`, `gpt-*`).
    #[serde(rename = "match")]
    pub pattern: String,
    /// Backend names, tried in order on connect error, timeout or 5xx.
    pub backends: Vec<String>,
    /// Strip the matched prefix before sending the model name upstream. Default true.
    #[serde(default = "defaults::yes", skip_serializing_if = "is_true")]
    pub strip_prefix: bool,
    /// Send this model name upstream instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

impl Agent {
    /// The agent type: `type`, else `command` when `command` is set, else `default`.
    pub fn type_or<'a>(&'a self, default: &'a str) -> &'a str {
        match (&self.kind, &self.command) {
            (Some(k), _) => k,
            (None, Some(_)) => "command",
            (None, None) => default,
        }
    }
}

impl Inference {
    /// The environment the agent gets for this section: the OpenAI variables, and the Anthropic
    /// ones when a backend is of that kind ([`crate::policy::inference::agent_env`]).
    pub fn agent_env(&self) -> Vec<(String, String)> {
        let anthropic = self
            .backends
            .iter()
            .any(|b| b.kind == BackendKind::Anthropic);
        crate::policy::inference::agent_env(anthropic)
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InferenceLimits {
    /// Upper bound for `max_tokens`; also the value set when a request omits it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<TemperatureRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    /// A daily token budget that survives restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_day: Option<u64>,
    /// Largest request body accepted. Default 4Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_size: Option<ByteSize>,
    /// Largest `n` (choices per request). Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_choices: Option<u32>,
    /// Largest number of tools in one request. Default 128.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tools: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemperatureRange {
    #[serde(default)]
    pub min: f64,
    pub max: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Guard {
    /// A Rhai script, relative to the blueprint.
    pub script: PathBuf,
    /// Also run on responses. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_response: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Filesystem {
    /// A directory to use as the sandbox's read-only root instead of the host's /usr, /bin, /lib.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mount {
    /// Absolute host path (or `~/...`).
    pub host: String,
    /// Absolute path inside the sandbox.
    pub path: String,
    /// Default true.
    #[serde(default = "defaults::yes", skip_serializing_if = "is_true")]
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    /// CPU cores (`1.5`) or millicores (`500m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    /// Memory limit (`512Mi`, `2Gi`); swap is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    /// Maximum number of processes and threads. Default 512.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<Gpu>,
    /// Cap on the state directory's size, checked periodically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<ByteSize>,
}

/// GPUs: a count, `all`, or a list of device indexes or UUIDs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Gpu {
    Count(u32),
    All(GpuAll),
    Devices(Vec<GpuDevice>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GpuAll {
    All,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum GpuDevice {
    Index(u32),
    Uuid(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Lifecycle {
    #[serde(default, skip_serializing_if = "is_default")]
    pub restart: RestartPolicy,
    /// Time between SIGTERM and SIGKILL on stop. Default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Give up restarting after this many crashes within `crashWindow`. Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<u32>,
    /// Default 10m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_window: Option<Dur>,
    /// Let `watch` restart a sandbox that died or changed outside nemoclaw. Default true.
    #[serde(default = "defaults::yes", skip_serializing_if = "is_true")]
    pub restart_on_drift: bool,
    /// Periodic consistent snapshots of the running agent's state (its cgroup frozen while
    /// the state is copied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
    /// When the supervisor gives up after `maxRestarts`, restore the newest checkpoint and
    /// start the agent once more. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restore_on_crash_loop: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Checkpoint {
    /// Time between checkpoints, such as 6h.
    pub every: Dur,
    /// Checkpoints kept per sandbox. Default 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            restart: RestartPolicy::default(),
            stop_timeout: None,
            health_check: None,
            max_restarts: None,
            crash_window: None,
            restart_on_drift: true,
            checkpoint: None,
            restore_on_crash_loop: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    Always,
    #[default]
    OnFailure,
    Never,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheck {
    /// A command run inside the sandbox; healthy when it exits 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<Vec<String>>,
    /// An HTTP GET inside the sandbox; healthy on a 2xx or 3xx answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    /// Default 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Dur>,
    /// Default 2s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
    /// Failures in a row before the agent counts as unhealthy. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Grace period after start during which failures do not count. Default 0s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<Dur>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpCheck {
    pub port: u32,
    #[serde(default = "defaults::slash")]
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Migrations {
    /// Directory of `v<N>.rhai` scripts, relative to the blueprint; `vN.rhai` migrates the
    /// agent's state from version N-1 to N.
    pub dir: PathBuf,
    /// Upgrade snapshots kept per sandbox. Default 3.
    #[serde(
        default,
        alias = "keepSnapshots",
        skip_serializing_if = "Option::is_none"
    )]
    pub keep: Option<u32>,
    /// Limits on each migration script; a script that reaches one fails and the upgrade rolls
    /// back.
    #[serde(default, skip_serializing_if = "is_default")]
    pub limits: ScriptLimits,
}

/// Engine limits for a migration script. Every field defaults to the value in
/// [`defaults`](self::defaults) (`SCRIPT_*`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScriptLimits {
    /// Rhai operations per script. Default 100000000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operations: Option<u64>,
    /// Nested function calls. Default 64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_depth: Option<u32>,
    /// Characters in one string (or all strings inside one array or map). Default 64Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_size: Option<u64>,
    /// Elements in one array, nested arrays included. Default 1000000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array_size: Option<u64>,
    /// Entries in one object map, nested maps included. Default 1000000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_size: Option<u64>,
    /// Wall-clock time per script. Default 60s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_time: Option<Dur>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SandboxSettings {
    #[serde(default, skip_serializing_if = "is_default")]
    pub seccomp: Seccomp,
    /// Size of the sandbox's /tmp (tmpfs). Default 64Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmp_size: Option<ByteSize>,
    /// Open file limit (RLIMIT_NOFILE). Default 4096.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nofile: Option<u64>,
    /// The agent's uid inside the sandbox. Default 1000; never 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The agent's gid inside the sandbox. Default 1000; never 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Seccomp {
    /// Extra syscall names to deny (EPERM) beyond the built-in list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

// Hand-written deserializers for the values that take several shapes: serde's untagged enums
// would answer "data did not match any variant"; these say what is wrong, and the map form keeps
// `deny_unknown_fields` with its did-you-mean.
mod shapes {
    use std::fmt;

    use serde::de::value::SeqAccessDeserializer;
    use serde::de::{self, Deserializer, SeqAccess, Visitor};
    use serde::Deserialize;

    use super::{Gpu, GpuAll, GpuDevice};

    const GPU_HELP: &str =
        "a GPU count such as 1, `all`, or a list of device indexes or GPU-/MIG- UUIDs";

    /// Why a `resources.gpu` value is refused (reported through serde's custom error).
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub(super) enum GpuError {
        #[error("gpu count {0} is too large")]
        CountTooLarge(u64),
        #[error("gpu count {0} is negative: write {GPU_HELP}")]
        NegativeCount(i64),
        #[error("`{0}` is not a GPU request: write {GPU_HELP} (a single UUID goes in a list)")]
        NotARequest(String),
        #[error("device index {0} is too large")]
        IndexTooLarge(u64),
    }

    impl<'de> Deserialize<'de> for Gpu {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Gpu;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str(GPU_HELP)
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<Gpu, E> {
                    u32::try_from(v)
                        .map(Gpu::Count)
                        .map_err(|_| E::custom(GpuError::CountTooLarge(v)))
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<Gpu, E> {
                    Err(E::custom(GpuError::NegativeCount(v)))
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Gpu, E> {
                    if v == "all" {
                        Ok(Gpu::All(GpuAll::All))
                    } else {
                        Err(E::custom(GpuError::NotARequest(v.to_string())))
                    }
                }
                fn visit_seq<A: SeqAccess<'de>>(self, s: A) -> Result<Gpu, A::Error> {
                    Vec::<GpuDevice>::deserialize(SeqAccessDeserializer::new(s)).map(Gpu::Devices)
                }
            }
            d.deserialize_any(V)
        }
    }

    impl<'de> Deserialize<'de> for GpuDevice {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = GpuDevice;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a device index such as 0 or a UUID such as GPU-8d3f...")
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<GpuDevice, E> {
                    u32::try_from(v)
                        .map(GpuDevice::Index)
                        .map_err(|_| E::custom(GpuError::IndexTooLarge(v)))
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<GpuDevice, E> {
                    Ok(GpuDevice::Uuid(v.to_string()))
                }
            }
            d.deserialize_any(V)
        }
    }
}

#[cfg(test)]
mod gpu_tests {
    use super::shapes::GpuError;
    use super::Gpu;

    #[test]
    fn gpu_errors_reach_the_yaml_message() {
        for (yaml, want) in [
            ("-1", GpuError::NegativeCount(-1)),
            ("some", GpuError::NotARequest("some".into())),
            ("4294967296", GpuError::CountTooLarge(1 << 32)),
        ] {
            let e = serde_saphyr::from_str::<Gpu>(yaml).unwrap_err().to_string();
            assert!(e.contains(&want.to_string()), "{yaml}: {e}");
        }
    }
}

/// Default values, in one place so the runtime and the docs agree.
pub mod defaults {
    use std::time::Duration;

    /// The agent type of a blueprint that names none and has no `agent.command`.
    pub const AGENT_TYPE: &str = "openclaw";
    /// The variable that changes [`AGENT_TYPE`] (`nemohermes` sets it to `hermes`).
    pub const AGENT_ENV: &str = "NEMOCLAW_AGENT";

    /// `NEMOCLAW_AGENT` when set, else [`AGENT_TYPE`].
    pub fn agent_type() -> String {
        std::env::var(AGENT_ENV)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| AGENT_TYPE.to_string())
    }
    pub const AGENT_UID: u32 = 1000;
    pub const AGENT_GID: u32 = 1000;
    pub const WORKDIR: &str = "/workspace/state";
    pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
    pub const BACKEND_TIMEOUT: Duration = Duration::from_secs(60);
    pub const PIDS: u32 = 512;
    pub const TMP_SIZE: u64 = 64 << 20;
    pub const NOFILE: u64 = 4096;
    pub const MAX_REQUEST_SIZE: u64 = 4 << 20;
    pub const MAX_CHOICES: u32 = 1;
    pub const MAX_TOOLS: u32 = 128;
    pub const MAX_RESTARTS: u32 = 5;
    pub const CRASH_WINDOW: Duration = Duration::from_secs(600);
    pub const HEALTH_INTERVAL: Duration = Duration::from_secs(10);
    pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
    pub const HEALTH_RETRIES: u32 = 3;
    pub const KEEP_SNAPSHOTS: u32 = 3;
    pub const KEEP_CHECKPOINTS: u32 = 4;
    pub const SCRIPT_OPERATIONS: u64 = 100_000_000;
    pub const SCRIPT_CALL_DEPTH: u32 = 64;
    pub const SCRIPT_STRING_SIZE: u64 = 64 << 20;
    pub const SCRIPT_ARRAY_SIZE: u64 = 1_000_000;
    pub const SCRIPT_MAP_SIZE: u64 = 1_000_000;
    pub const SCRIPT_WALL_TIME: Duration = Duration::from_secs(60);
    pub use crate::policy::types::DOMAIN_PORTS;

    pub(crate) fn yes() -> bool {
        true
    }
    pub(crate) fn slash() -> String {
        "/".into()
    }
}
