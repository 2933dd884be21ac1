//! The agent's environment, built from scratch: nothing is inherited from the host.

use std::collections::BTreeMap;

use crate::blueprint::types::Blueprint;

use super::checks::{check_env_name, CheckError};
use super::{AgentLaunch, SpecError, SANDBOX_PATH, STATE_PATH};

/// The variables every sandbox gets, before the blueprint's.
const BASE: [(&str, &str); 9] = [
    ("PATH", SANDBOX_PATH),
    ("HOME", STATE_PATH),
    ("USER", "agent"),
    ("LOGNAME", "agent"),
    ("SHELL", "/bin/sh"),
    ("LANG", "C.UTF-8"),
    ("TERM", "dumb"),
    ("TMPDIR", "/tmp"),
    ("NEMOCLAW_STATE_DIR", STATE_PATH),
];

/// The base variables, the sandbox's name, inference, the plugin's variables, `agent.env`, then
/// the resolved secrets (later ones win); the plugin's directories lead `PATH`. No name or
/// value may hold a NUL byte.
pub fn environment(
    bp: &Blueprint,
    name: &str,
    secrets: &BTreeMap<String, String>,
    agent: Option<&AgentLaunch>,
) -> Result<BTreeMap<String, String>, SpecError> {
    let mut env: BTreeMap<String, String> = BASE
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.insert("HOSTNAME".into(), name.to_string());
    env.insert("NEMOCLAW_SANDBOX".into(), name.to_string());
    if let Some(inference) = &bp.inference {
        env.extend(inference.agent_env());
    }
    if let Some(a) = agent {
        plugin_env(a, &mut env)?;
    }
    for (k, v) in &bp.agent.env {
        check_env_name(k).map_err(|reason| SpecError::check(format!("agent.env.{k}"), reason))?;
        env.insert(k.clone(), v.clone());
    }
    for (k, v) in secrets {
        check_env_name(k)
            .map_err(|reason| SpecError::check(format!("agent.secrets[{k}]"), reason))?;
        env.insert(k.clone(), v.clone());
    }
    if let Some((k, _)) = env.iter().find(|(_, v)| v.contains('\0')) {
        return Err(SpecError::check(format!("agent.env.{k}"), CheckError::Nul));
    }
    Ok(env)
}

/// The plugin's variables and its `PATH` directories (before the sandbox's own).
fn plugin_env(a: &AgentLaunch, env: &mut BTreeMap<String, String>) -> Result<(), SpecError> {
    for (k, v) in &a.env {
        check_env_name(k).map_err(|reason| {
            SpecError::check(format!("agent.type `{}`: start.env.{k}", a.kind), reason)
        })?;
        env.insert(k.clone(), v.clone());
    }
    if !a.path.is_empty() {
        let path = a.path.iter().map(String::as_str).chain([SANDBOX_PATH]);
        env.insert("PATH".into(), path.collect::<Vec<_>>().join(":"));
    }
    Ok(())
}
