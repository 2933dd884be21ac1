//! Health checks (`lifecycle.healthCheck`), run by the supervisor without threads:
//!
//! - `exec`: the command runs inside the sandbox exactly like `nemoclaw exec` (same namespaces,
//!   cgroup, uid, seccomp); healthy when it exits 0.
//! - `http`: a forked helper joins only the sandbox's network namespace and sends
//!   `GET <path>` to `127.0.0.1:<port>`; healthy on a 2xx or 3xx answer. Nothing is exposed on the
//!   host for it.
//!
//! [`HealthState`] (pure) turns results into healthy/unhealthy with `retries` and
//! `startPeriod`.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use crate::blueprint::types::{defaults, HealthCheck};
use crate::sandbox::enter::{self, Target};
use crate::sandbox::{spawn, Stdio};

/// The check's settings with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    Exec(Vec<String>),
    Http { port: u16, path: String },
}

impl Check {
    pub fn from_blueprint(h: &HealthCheck) -> Option<Check> {
        let kind = if let Some(cmd) = h.exec.clone().filter(|c| !c.is_empty()) {
            CheckKind::Exec(cmd)
        } else {
            let http = h.http.as_ref()?;
            CheckKind::Http {
                port: u16::try_from(http.port).ok()?,
                path: http.path.clone(),
            }
        };
        Some(Check {
            kind,
            interval: h
                .interval
                .map(|d| d.as_duration())
                .unwrap_or(defaults::HEALTH_INTERVAL),
            timeout: h
                .timeout
                .map(|d| d.as_duration())
                .unwrap_or(defaults::HEALTH_TIMEOUT),
            retries: h.retries.unwrap_or(defaults::HEALTH_RETRIES).max(1),
            start_period: h.start_period.map(|d| d.as_duration()).unwrap_or_default(),
        })
    }
}

/// Consecutive results -> health. Pure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthState {
    pub failures: u32,
    /// `None` until the first result counts.
    pub healthy: Option<bool>,
}

impl HealthState {
    /// Records a result; `in_start_period` failures do not count.
    pub fn record(&mut self, ok: bool, retries: u32, in_start_period: bool) {
        if ok {
            self.failures = 0;
            self.healthy = Some(true);
        } else if !in_start_period {
            self.failures += 1;
            if self.failures >= retries {
                self.healthy = Some(false);
            }
        }
    }
}

/// A check in flight: a child process and its deadline.
#[derive(Debug)]
pub struct Running {
    pub pid: Pid,
    pub deadline: Instant,
}

/// Starts one check against the sandbox whose init is `target.pid`.
pub fn start(check: &Check, target: &Target) -> Result<Running, String> {
    let deadline = Instant::now() + check.timeout;
    let pid = match &check.kind {
        CheckKind::Exec(cmd) => {
            let null = || spawn::dev_null().map_err(|e| e.to_string());
            let stdio = Stdio {
                stdin: null()?,
                stdout: null()?,
                stderr: null()?,
            };
            enter::enter(target, cmd, stdio).map_err(|e| e.to_string())?
        }
        CheckKind::Http { port, path } => http_probe(target.pid, *port, path, check.timeout)?,
    };
    Ok(Running { pid, deadline })
}

/// Forks a helper that joins the sandbox's network namespace and does one HTTP GET. Its exit
/// status is the answer (0 healthy).
fn http_probe(init_pid: i32, port: u16, path: &str, timeout: Duration) -> Result<Pid, String> {
    let ns = std::fs::File::open(format!("/proc/{init_pid}/ns/net"))
        .map_err(|e| format!("network namespace: {e}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nUser-Agent: nemoclaw-health\r\n\r\n");
    // SAFETY: the supervisor is single-threaded, so the child may use std freely; it leaves
    // with _exit and never returns into the supervisor's loop.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error().to_string()),
        0 => {
            // SAFETY: setns with an fd we own; _exit ends the helper.
            let ok = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } == 0
                && http_ok(port, &request, timeout);
            // SAFETY: leave without running the supervisor's destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        pid => Ok(Pid::from_raw(pid)),
    }
}

fn http_ok(port: u16, request: &str, timeout: Duration) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(timeout));
    if s.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 64];
    let n = s.read(&mut head).unwrap_or(0);
    http_status_ok(&head[..n])
}

/// True for a `HTTP/1.x 2xx` or `3xx` status line. Pure.
pub fn http_status_ok(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    let mut parts = text.split_whitespace();
    matches!((parts.next(), parts.next()), (Some(v), Some(code)) if v.starts_with("HTTP/1.") && (code.starts_with('2') || code.starts_with('3')) && code.len() == 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_and_start_period() {
        let mut h = HealthState::default();
        h.record(false, 2, true);
        assert_eq!(h.healthy, None, "start period failures do not count");
        h.record(false, 2, false);
        assert_eq!(h.healthy, None);
        h.record(false, 2, false);
        assert_eq!(h.healthy, Some(false));
        h.record(true, 2, false);
        assert_eq!((h.healthy, h.failures), (Some(true), 0));
    }

    #[test]
    fn http_status_lines() {
        assert!(http_status_ok(b"HTTP/1.1 200 OK\r\n"));
        assert!(http_status_ok(b"HTTP/1.0 302 Found\r\n"));
        assert!(!http_status_ok(b"HTTP/1.1 500 Internal Server Error\r\n"));
        assert!(!http_status_ok(b"SSH-2.0-OpenSSH"));
        assert!(!http_status_ok(b""));
    }
}
