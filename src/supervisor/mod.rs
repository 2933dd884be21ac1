//! The per-sandbox supervisor: a detached process that owns one sandbox (its loop on the main
//! thread; the gateway's tokio runtime and http health probes on threads of their own).
//!
//! - [`daemon`]: the process itself (lock = alive, restart policy, log capture, control socket).
//! - [`protocol`]: the versioned JSON-lines control protocol (`docs/control-protocol.md`).
//! - [`client`]: the CLI's side of the control socket.
//! - [`foreground`]: a sandbox's stdio and signals in the foreground of its caller (`run`,
//!   `exec`).
//! - [`policy`]: restart decisions with backoff and give-up (pure).
//! - [`logcap`]: the size-capped agent log.
//! - [`memory`]: start-up's pages handed back once the agent runs.
//! - [`health`]: health checks (exec in the sandbox, http from a socket in its netns).
//! - [`checkpoint`]: checkpoints of the running agent's state (frozen cgroup), and the
//!   restore of the newest one after a crash loop.
//! - [`setup`]: an agent plugin's setup script in a sandbox of its own (`__setup`).

use crate::blueprint::diag::Diagnostic;
use crate::home::{Home, HomeError};
use crate::sandbox::cgroups::CgroupError;
use crate::sandbox::instance::InstanceError;
use crate::sandbox::spawn::SpawnError;
use std::path::PathBuf;

pub mod checkpoint;
pub mod client;
pub mod daemon;
pub mod exec;
pub mod foreground;
pub mod gateway;
pub mod health;
pub mod launch;
pub mod logcap;
pub mod memory;
pub mod pidlock;
pub mod policy;
pub mod protocol;
pub mod setup;

/// The hidden argument that runs the supervisor (`nemoclaw __supervise NAME`).
pub const SUPERVISE_ARG: &str = "__supervise";

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("a supervisor is already running")]
    AlreadyRunning(#[from] pidlock::PidLockError),
    /// The deployed blueprint does not load; the diagnostics say where and why.
    #[error("deployed blueprint: {}", .diagnostics.iter().map(|d| d.headline()).collect::<Vec<_>>().join("; "))]
    Blueprint { diagnostics: Vec<Diagnostic> },
    #[error(transparent)]
    Spec(#[from] InstanceError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// The gateway could not be built (a key unreadable, the policy not compiling ...).
    #[error(transparent)]
    Gateway(#[from] gateway::GatewayError),
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("control protocol")]
    Protocol(#[from] ProtocolError),
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error(transparent)]
    Foreground(#[from] foreground::ForegroundError),
    /// The agent's plugin: not found, not installed, or its templates do not render.
    #[error(transparent)]
    Agent(#[from] crate::plugin::start::StartError),
}

/// What can go wrong speaking the control protocol, as its client.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The supervisor answered with an error (its message).
    #[error("{0}")]
    Refused(String),
    #[error("encoding the request")]
    Encode(#[source] serde_json::Error),
    #[error("the supervisor closed the connection")]
    Closed,
    #[error("bad response")]
    BadResponse(#[source] serde_json::Error),
}

/// Whether the supervisor of `name` is alive: its pid file is locked.
pub fn is_running(home: &Home, name: &str) -> bool {
    pidlock::is_held(&home.supervisor_pid(name))
}

/// Whether `args` (the whole command line) runs the supervisor rather than the CLI.
pub fn is_supervise_invocation(args: &[std::ffi::OsString]) -> bool {
    args.get(1).is_some_and(|a| a == SUPERVISE_ARG)
}

/// Entry for `nemoclaw __supervise NAME` (before the CLI parser). Sets up its logging (JSON
/// lines on stderr, the supervisor log). Exits with the status.
pub fn main(args: &[std::ffi::OsString]) -> std::process::ExitCode {
    let Some(name) = args.first().and_then(|a| a.to_str()) else {
        eprintln!("usage: nemoclaw __supervise NAME");
        return std::process::ExitCode::from(64);
    };
    crate::observe::logging::init_supervisor(name);
    let home = match std::env::var_os("NEMOCLAW_HOME") {
        Some(h) => Home::at(PathBuf::from(h)),
        None => match Home::default_location() {
            Ok(h) => h,
            Err(e) => {
                daemon::event(
                    name,
                    "supervisor-failed",
                    serde_json::json!({"error": crate::error_chain(&e)}),
                );
                return std::process::ExitCode::from(1);
            }
        },
    };
    match run_with_gateway(&home, name) {
        // An exit status is a byte: the kernel keeps the low 8 bits of the code.
        Ok(code) => std::process::ExitCode::from(code.to_le_bytes()[0]),
        Err(e) => {
            daemon::event(
                name,
                "supervisor-failed",
                serde_json::json!({"error": crate::error_chain(&e)}),
            );
            std::process::ExitCode::from(1)
        }
    }
}

/// Runs the supervisor with the sandbox's gateway (network policy and inference) as its
/// network hook. Signals are blocked first, so the gateway's threads inherit the mask and the
/// supervisor's signalfd sees every SIGTERM.
fn run_with_gateway(home: &Home, name: &str) -> Result<i32, SupervisorError> {
    daemon::block_signals()?;
    let bp_path = home.deployed_blueprint(name);
    let agent = daemon::DeployedAgent::load(home, name)?;
    let bp = &agent.prepared.blueprint;
    let hook =
        gateway::GatewayHook::new(home, name, bp, &bp_path).map_err(SupervisorError::Gateway)?;
    daemon::run_with(home, name, Box::new(hook), agent)
}
