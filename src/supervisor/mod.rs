//! The per-sandbox supervisor: a detached, single-threaded process that owns one sandbox.
//!
//! - [`daemon`]: the process itself (lock = alive, restart policy, log capture, control socket).
//! - [`protocol`]: the versioned JSON-lines control protocol (`docs/control-protocol.md`).
//! - [`client`]: the CLI's side of the control socket.
//! - [`policy`]: restart decisions with backoff and give-up (pure).
//! - [`logcap`]: the size-capped agent log.

use std::path::PathBuf;
use std::time::Duration;

use crate::home::{FileLock, Home, HomeError};

pub mod client;
pub mod daemon;
pub mod logcap;
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
    let p = home.run_dir(name).join("supervisor.pid");
    if !p.exists() {
        return false;
    }
    match FileLock::acquire(&p, "probe", Duration::ZERO) {
        Ok(_) => false,
        Err(HomeError::Locked { .. }) => true,
        Err(_) => false,
    }
}

/// The control socket of `name`.
pub fn control_socket(home: &Home, name: &str) -> PathBuf {
    home.run_dir(name).join("control.sock")
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
    match daemon::run(&home, name) {
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
