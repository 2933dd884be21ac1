//! `nemoclaw __setup REQUEST` (hidden): one plugin's setup script in a sandbox of its own,
//! run in the foreground by `plugin::install::ensure` as a child process. The sandbox is an
//! ordinary nemoclaw sandbox — namespaces, seccomp, cgroup limits, its own gateway — whose only
//! egress is the plugin's setup presets, with the install directory bound writable at
//! `AGENT_DIR` (the path every agent sandbox later binds it at, read-only).

use std::collections::BTreeMap;

use crate::blueprint::types::Blueprint;
use crate::home::{write_atomic, Home};
use crate::plugin::install::SetupRequest;
use crate::plugin::launch::{Prepared, StopPlan};
use crate::sandbox::spec::{AgentLaunch, AGENT_DIR, STATE_PATH};
use crate::sandbox::SpawnOptions;

use super::daemon::{run_foreground, ForegroundRun, Outcome};
use super::SupervisorError;

/// Memory of a setup sandbox when the plugin sets none (npm and pip need a few hundred MB).
const SETUP_MEMORY: u64 = 2 << 30;
/// The CA bundle every sandbox binds from the host: TLS clients that bring their own roots
/// (Node, pip, nemoclaw's own `__npm-fetch`) are pointed at it, so a host behind a TLS-inspecting proxy installs too.
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Runs the setup of `req` to its end; its output goes to our stdout and stderr.
pub fn run(home: &Home, req: &SetupRequest) -> Result<Outcome, SupervisorError> {
    let name = req.sandbox_name();
    let yaml = blueprint_yaml(&name, req);
    let bp_path = home.run_dir(&name).join("setup.yaml");
    crate::home::create_dir_private(&home.run_dir(&name))?;
    write_atomic(&bp_path, yaml.as_bytes(), 0o600)?;
    let bp: Blueprint = crate::blueprint::set::load_one(&bp_path)
        .map(|e| e.blueprint)
        .map_err(|diagnostics| SupervisorError::Blueprint { diagnostics })?;
    let agent = Prepared {
        launch: launch(req),
        blueprint: bp.clone(),
        files: vec![],
        stop: StopPlan::default(),
    };
    run_foreground(
        home,
        ForegroundRun {
            blueprint: &bp,
            blueprint_path: &bp_path,
            agent: &agent,
            command: None,
            spawn: SpawnOptions::default(),
            gateway: true,
        },
    )
}

/// The setup sandbox's blueprint: no inference, egress only through the setup presets.
fn blueprint_yaml(name: &str, req: &SetupRequest) -> String {
    let quoted = |v: &[String]| -> String {
        let q: Vec<String> = v.iter().map(|p| format!("{p:?}")).collect();
        q.join(", ")
    };
    let memory = req.memory.unwrap_or(SETUP_MEMORY);
    format!(
        "apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: {name}\n  version: 1\n\
         agent:\n  type: command\n  command: /bin/sh\n\
         network:\n  egress:\n    presets: [{}]\n    allowAddresses: [{}]\n\
         resources:\n  memory: {memory}\n  pids: 1024\n\
         sandbox:\n  tmpSize: 256Mi\n\
         lifecycle:\n  restart: never\n",
        quoted(&req.egress),
        quoted(&req.allow_addresses),
    )
}

/// `sh -eu -c SCRIPT` with the install's variables, the host's CA bundle for clients with
/// their own roots, and package managers kept quiet about themselves.
fn launch(req: &SetupRequest) -> AgentLaunch {
    let mut env: BTreeMap<String, String> = [
        ("AGENT_DIR", AGENT_DIR),
        ("AGENT_VERSION", req.version.as_str()),
        ("AGENT_PACKAGE", req.package.as_deref().unwrap_or("")),
        ("NODE_EXTRA_CA_CERTS", CA_BUNDLE),
        ("PIP_CERT", CA_BUNDLE),
        ("SSL_CERT_FILE", CA_BUNDLE),
        ("REQUESTS_CA_BUNDLE", CA_BUNDLE),
        (crate::tls::CA_FILE_ENV, CA_BUNDLE),
        ("npm_config_update_notifier", "false"),
        ("npm_config_fund", "false"),
        ("npm_config_audit", "false"),
        ("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
        ("PIP_NO_INPUT", "1"),
        ("PIP_PROGRESS_BAR", "off"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.insert("XDG_CACHE_HOME".into(), format!("{STATE_PATH}/.cache"));
    AgentLaunch {
        kind: req.plugin.clone(),
        argv: vec![
            "/bin/sh".into(),
            "-eu".into(),
            "-c".into(),
            req.script.clone(),
        ],
        env,
        path: vec![],
        install: Some(req.install_dir.clone()),
        install_writable: true,
    }
}
