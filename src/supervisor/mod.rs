//! The per-sandbox supervisor: a detached, single-threaded process that owns one sandbox.
//!
//! - [`daemon`]: the process itself (lock = alive, restart policy, log capture, control socket).
//! - [`protocol`]: the versioned JSON-lines control protocol (`docs/control-protocol.md`).
//! - [`client`]: the CLI's side of the control socket.
//! - [`policy`]: restart decisions with backoff and give-up (pure).
//! - [`logcap`]: the size-capped agent log.

use crate::home::{Home, HomeError};
use std::path::PathBuf;

pub mod client;
pub mod daemon;
pub mod gateway;
pub mod health;
pub mod launch;
pub mod logcap;
pub mod pidlock;
pub mod policy;
pub mod protocol;

/// The hidden argument that runs the supervisor (`nemoclaw __supervise NAME`).
pub const SUPERVISE_ARG: &str = "__supervise";

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("a supervisor is already running: {0}")]
    AlreadyRunning(String),
    #[error("deployed blueprint: {0}")]
    Blueprint(String),
    #[error("{0}")]
    Sandbox(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("control protocol: {0}")]
    Protocol(String),
    #[error(transparent)]
    Home(#[from] HomeError),
}

/// Whether the supervisor of `name` is alive: its pid file is locked.
pub fn is_running(home: &Home, name: &str) -> bool {
    pidlock::is_held(&home.supervisor_pid(name))
}

/// Entry for `nemoclaw __supervise NAME` (before the CLI parser). Exits with the status.
pub fn main(args: &[std::ffi::OsString]) -> std::process::ExitCode {
    let Some(name) = args.first().and_then(|a| a.to_str()) else {
        eprintln!("usage: nemoclaw __supervise NAME");
        return std::process::ExitCode::from(64);
    };
    let home = match std::env::var_os("NEMOCLAW_HOME") {
        Some(h) => Home::at(PathBuf::from(h)),
        None => match Home::default_location() {
            Ok(h) => h,
            Err(e) => {
                daemon::event(
                    name,
                    "supervisor-failed",
                    serde_json::json!({"error": e.to_string()}),
                );
                return std::process::ExitCode::from(1);
            }
        },
    };
    match run_with_gateway(&home, name) {
        Ok(code) => std::process::ExitCode::from(code as u8),
        Err(e) => {
            daemon::event(
                name,
                "supervisor-failed",
                serde_json::json!({"error": e.to_string()}),
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
    let bp_path = daemon::deployed_blueprint(home, name);
    let bp = daemon::load(&bp_path)?;
    let hook = gateway::GatewayHook::new(home, name, &bp, &bp_path)
        .map_err(|e| SupervisorError::Sandbox(crate::error_chain(&e)))?;
    daemon::run_with(home, name, Box::new(hook))
}
