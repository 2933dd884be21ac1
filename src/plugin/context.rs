//! The template context a plugin's files, environment and command are rendered with (pure).
//!
//! ```text
//! agent:     {type, version, dir, package}
//! sandbox:   {name, state, token}
//! inference: {baseUrl, apiKeyEnv, placeholderKey, defaultModel, models: [{id, contextWindow, maxTokens}]}
//! ports:     [the plugin's ports]
//! hook:      what the plugin's `context` hook returned (empty without a hook)
//! ```
//! Templates write the key as a reference to `apiKeyEnv` (`${OPENAI_API_KEY}`), which the agent
//! expands: the placeholder only ever reaches the gateway, which swaps in the real key.

use serde_json::{json, Value};

use crate::blueprint::plugin::PluginManifest;
use crate::blueprint::types::Blueprint;
use crate::policy::inference::{INFERENCE_HOST, OPENAI_KEY_ENV, PLACEHOLDER_KEY};
use crate::sandbox::spec::{AGENT_DIR, STATE_PATH};

/// The context window a model entry gets: the blueprint does not say, and agents refuse small
/// ones (Hermes needs at least 64K).
pub const CONTEXT_WINDOW: u32 = 131_072;
/// `maxTokens` of a model entry when the blueprint's `inference.limits.maxTokens` is unset.
pub const MAX_TOKENS: u32 = 4096;

/// What [`context`] is built from.
#[derive(Debug, Clone, Copy)]
pub struct ContextInput<'a> {
    pub blueprint: &'a Blueprint,
    pub manifest: &'a PluginManifest,
    /// The agent version installed (the blueprint's `agent.version` or the package default).
    pub version: &'a str,
    /// A random per-sandbox token (kept in the run dir) for an agent's own local API.
    pub token: &'a str,
}

/// The context for one agent.
pub fn context(i: ContextInput<'_>) -> Value {
    let bp = i.blueprint;
    json!({
        "agent": {
            "type": i.manifest.metadata.name,
            "version": i.version,
            "dir": AGENT_DIR,
            "package": i.manifest.package.as_ref().map(|p| p.name.as_str()),
        },
        "sandbox": {"name": bp.metadata.name, "state": STATE_PATH, "token": i.token},
        "inference": inference(bp),
        "ports": i.manifest.ports,
        "hook": {},
    })
}

/// The models the agent may call (wildcard entries cannot be listed, so they are left out).
fn inference(bp: &Blueprint) -> Value {
    let inf = bp.inference.as_ref();
    let max_tokens = inf.and_then(|i| i.limits.max_tokens).unwrap_or(MAX_TOKENS);
    let models: Vec<Value> = inf
        .map(|i| i.allowed_models.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|m| !m.ends_with('*'))
        .map(|m| json!({"id": m, "contextWindow": CONTEXT_WINDOW, "maxTokens": max_tokens}))
        .collect();
    json!({
        "enabled": inf.is_some(),
        "baseUrl": format!("http://{INFERENCE_HOST}/v1"),
        "apiKeyEnv": OPENAI_KEY_ENV,
        "placeholderKey": PLACEHOLDER_KEY,
        "defaultModel": models.first().map(|m| m["id"].clone()).unwrap_or(Value::Null),
        "models": models,
    })
}
