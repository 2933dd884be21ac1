//! From a blueprint and its agent's plugin to what the sandbox runs (pure): the
//! [`AgentLaunch`] the spec takes, the rendered files, how to stop the agent, and the
//! *effective* blueprint — the plugin's defaults (health check, stop timeout, memory, `/tmp`,
//! run-time egress presets) filled in where the blueprint says nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::blueprint::plugin::PluginManifest;
use crate::blueprint::types::{defaults, Blueprint};
use crate::sandbox::spec::{AgentLaunch, AGENT_DIR};

use super::context::{context, ContextInput};
use super::render::{render, RenderError, RenderedFile};

/// How the supervisor stops the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopPlan {
    pub signal: Signal,
    pub timeout: Duration,
    /// Exit codes that are a clean stop after [`StopPlan::signal`].
    pub clean_exits: Vec<i32>,
}

impl Default for StopPlan {
    fn default() -> Self {
        StopPlan {
            signal: Signal::SIGTERM,
            timeout: defaults::STOP_TIMEOUT,
            clean_exits: vec![0],
        }
    }
}

/// Everything the plugin adds to one start of one agent.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub launch: AgentLaunch,
    /// The blueprint with the plugin's defaults filled in.
    pub blueprint: Blueprint,
    pub files: Vec<RenderedFile>,
    pub stop: StopPlan,
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("plugin `{plugin}`: stop.signal `{signal}` is not a signal name")]
    Signal { plugin: String, signal: String },
}

/// What [`prepare`] needs besides the blueprint and the plugin.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The installed tree (`None` for plugins without setup).
    pub install: Option<&'a PathBuf>,
    pub version: &'a str,
    /// The sandbox's own token ([`crate::home::Home::agent_token`]).
    pub token: &'a str,
}

/// Renders the plugin (its manifest and its directory's files by relative path) for this
/// blueprint.
pub fn prepare(
    bp: &Blueprint,
    m: &PluginManifest,
    files: &BTreeMap<String, String>,
    i: Inputs<'_>,
) -> Result<Prepared, LaunchError> {
    let blueprint = effective(bp, m);
    let ctx = context(ContextInput {
        blueprint: &blueprint,
        manifest: m,
        version: i.version,
        token: i.token,
    });
    let r = render(m, files, ctx)?;
    let launch = AgentLaunch {
        kind: m.metadata.name.clone(),
        argv: r.argv,
        env: r.env,
        path: m
            .start
            .path
            .iter()
            .map(|d| format!("{AGENT_DIR}/{d}"))
            .collect(),
        install: i.install.cloned(),
        install_writable: false,
    };
    Ok(Prepared {
        launch,
        files: r.files,
        stop: stop_plan(&blueprint, m)?,
        blueprint,
    })
}

/// The blueprint with the plugin's defaults where it sets nothing, and the plugin's run-time
/// egress presets added to its own.
pub fn effective(bp: &Blueprint, m: &PluginManifest) -> Blueprint {
    let mut b = bp.clone();
    b.agent.kind = Some(m.metadata.name.clone());
    let lc = &mut b.lifecycle;
    if lc.health_check.is_none() {
        lc.health_check.clone_from(&m.health_check);
    }
    if lc.stop_timeout.is_none() {
        lc.stop_timeout = m.stop.timeout;
    }
    if let Some(r) = &m.resources {
        b.resources.memory = b.resources.memory.or(r.memory);
        b.resources.pids = b.resources.pids.or(r.pids);
        b.sandbox.tmp_size = b.sandbox.tmp_size.or(r.tmp_size);
    }
    for p in &m.start.egress {
        if !b.network.egress.presets.contains(p) {
            b.network.egress.presets.push(p.clone());
        }
    }
    b
}

fn stop_plan(bp: &Blueprint, m: &PluginManifest) -> Result<StopPlan, LaunchError> {
    let signal = m
        .stop
        .signal
        .parse::<Signal>()
        .map_err(|_| LaunchError::Signal {
            plugin: m.metadata.name.clone(),
            signal: m.stop.signal.clone(),
        })?;
    Ok(StopPlan {
        signal,
        timeout: bp
            .lifecycle
            .stop_timeout
            .map_or(defaults::STOP_TIMEOUT, |d| d.as_duration()),
        clean_exits: m.stop.exit_codes.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blueprint::load::parse_str;

    fn manifest() -> PluginManifest {
        serde_saphyr::from_str(concat!(
            "apiVersion: nemoclaw.dev/v1\nkind: Plugin\nmetadata: {name: hermes}\n",
            "package: {name: hermes-agent, registry: pypi, defaultVersion: '0.19.0'}\n",
            "start:\n  command: [hermes, gateway, run]\n  path: [venv/bin]\n",
            "  env: {HERMES_HOME: '{{ sandbox.state }}/hermes', KEY: '{{ sandbox.token }}'}\n",
            "  egress: [pypi]\n",
            "  files: [{path: hermes/config.yaml, template: c.j2}]\n",
            "stop: {signal: SIGINT, timeout: 7s, exitCodes: [0, 1]}\n",
            "healthCheck: {http: {port: 8642, path: /health}, startPeriod: 30s}\n",
            "resources: {memory: 1Gi, tmpSize: 256Mi}\n",
        ))
        .unwrap()
    }

    fn blueprint(extra: &str) -> Blueprint {
        parse_str(&format!(
            "apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata: {{name: h1, version: 1}}\n\
             agent: {{type: hermes}}\n\
             inference:\n  backends: [{{name: m, kind: mock}}]\n  allowedModels: [mock-1, 'nim/*']\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn the_plugin_fills_what_the_blueprint_leaves_open_and_adds_its_egress() {
        let m = manifest();
        let b = effective(&blueprint("network: {egress: {presets: [github]}}\n"), &m);
        assert_eq!(b.resources.memory.map(|x| x.bytes()), Some(1 << 30));
        assert_eq!(b.sandbox.tmp_size.map(|x| x.bytes()), Some(256 << 20));
        assert_eq!(b.network.egress.presets, vec!["github", "pypi"]);
        assert_eq!(b.lifecycle.health_check, m.health_check);
        assert_eq!(b.lifecycle.stop_timeout, m.stop.timeout);
        let own = effective(
            &blueprint("resources: {memory: 2Gi}\nlifecycle: {stopTimeout: 3s, healthCheck: {exec: [true]}}\n"),
            &m,
        );
        assert_eq!(own.resources.memory.map(|x| x.bytes()), Some(2 << 30));
        assert_eq!(
            own.lifecycle.stop_timeout.map(|d| d.as_duration()),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            own.lifecycle.health_check.unwrap().exec,
            Some(vec!["true".to_string()])
        );
    }

    #[test]
    fn prepare_renders_command_env_files_and_the_stop_plan() {
        let files = BTreeMap::from([(
            "c.j2".to_string(),
            "model: {{ inference.defaultModel }} models: {{ inference.models | length }}\n"
                .to_string(),
        )]);
        let install = PathBuf::from("/cache/agents/hermes/0.19.0");
        let p = prepare(
            &blueprint(""),
            &manifest(),
            &files,
            Inputs {
                install: Some(&install),
                version: "0.19.0",
                token: "t0k",
            },
        )
        .unwrap();
        assert_eq!(p.launch.argv, vec!["hermes", "gateway", "run"]);
        assert_eq!(p.launch.path, vec![format!("{AGENT_DIR}/venv/bin")]);
        assert_eq!(p.launch.env["HERMES_HOME"], "/workspace/state/hermes");
        assert_eq!(p.launch.env["KEY"], "t0k");
        assert_eq!(p.launch.install, Some(install));
        assert!(!p.launch.install_writable);
        // The wildcard model cannot be listed; the first listed one is the default.
        assert_eq!(p.files[0].contents, "model: mock-1 models: 1\n");
        assert_eq!(
            p.stop,
            StopPlan {
                signal: Signal::SIGINT,
                timeout: Duration::from_secs(7),
                clean_exits: vec![0, 1],
            }
        );
    }
}
