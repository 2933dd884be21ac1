//! Health checks (`lifecycle.healthCheck`), run by the supervisor without blocking its loop:
//!
//! - `exec`: the command runs inside the sandbox exactly like `nemoclaw exec` (same namespaces,
//!   cgroup, uid, seccomp); healthy when it exits 0.
//! - `http`: a TCP socket is created inside the sandbox's network namespace (by a short-lived
//!   thread that joins it; a socket keeps the netns it was made in), then a probe thread of the
//!   supervisor sends `GET <path>` to `127.0.0.1:<port>` on it; healthy on a 2xx or 3xx answer.
//!   Nothing is forked (the supervisor holds the gateway's tokio runtime, so it is
//!   multi-threaded) and nothing is exposed on the host for it.
//!
//! [`HealthState`] (pure) turns results into healthy/unhealthy with `retries` and
//! `startPeriod`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::socket::{send, MsgFlags};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use socket2::Socket;

use crate::blueprint::types::{defaults, HealthCheck};
use crate::gateway::netns::{tcp_socket_in_netns, NetError};
use crate::sandbox::enter::{self, Target};
use crate::sandbox::spawn::SpawnError;
use crate::sandbox::{spawn, Stdio};

/// Why a check could not be started (a check that runs and fails is a result, not an error).
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("the exec check cannot enter the sandbox")]
    Exec(#[from] SpawnError),
    #[error("the sandbox's network namespace (/proc/{pid}/ns/net)")]
    Netns {
        pid: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("the http check's socket inside the sandbox")]
    Socket(#[from] NetError),
    #[error("starting the http probe thread")]
    Thread(#[source] std::io::Error),
}

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

/// How often a check runs during its start period until it first passes, so "healthy" is
/// seen a moment after the agent is, not an interval later (Docker's `start_interval`).
pub const START_INTERVAL: Duration = Duration::from_millis(250);

impl Check {
    /// The delay before the next probe: [`START_INTERVAL`] while the agent is in its start
    /// period and has not passed yet, else the interval.
    pub fn next_delay(&self, state: &HealthState, since_start: Duration) -> Duration {
        if state.healthy != Some(true) && since_start < self.start_period {
            self.interval.min(START_INTERVAL)
        } else {
            self.interval
        }
    }

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

/// A check in flight and its deadline.
#[derive(Debug)]
pub struct Running {
    pub deadline: Instant,
    probe: Probe,
    /// Set when the deadline passed: the result is then a failure, whatever the probe says.
    expired: bool,
}

/// What runs the check.
#[derive(Debug)]
enum Probe {
    /// An exec check: a process entered into the sandbox, reaped with waitpid.
    Process(Pid),
    /// An http check: a probe thread that writes one byte (1 healthy, 0 not) here.
    Thread(UnixStream),
}

impl Running {
    /// The descriptor that becomes readable when an http probe has its answer (exec checks
    /// are noticed through SIGCHLD instead).
    pub fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.probe {
            Probe::Thread(s) => Some(s.as_fd()),
            Probe::Process(_) => None,
        }
    }

    /// Called once the deadline passed: an exec check is killed; either way it counts as
    /// failed.
    pub fn expire(&mut self) {
        if let Probe::Process(pid) = self.probe {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        }
        self.expired = true;
    }

    /// The result once the check is over (`None` while it still runs). A killed exec check is
    /// reaped here too.
    pub fn try_result(&mut self) -> Option<bool> {
        let result = match &mut self.probe {
            Probe::Process(pid) => match waitpid(*pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, c)) => Some(c == 0),
                Ok(WaitStatus::Signaled(..)) | Err(_) => Some(false),
                Ok(_) => None,
            },
            Probe::Thread(s) => {
                let mut byte = [0u8; 1];
                match s.read(&mut byte) {
                    Ok(1) => Some(byte[0] == 1),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
                    _ => Some(false),
                }
            }
        };
        match result {
            Some(ok) => Some(ok && !self.expired),
            None if self.expired && matches!(self.probe, Probe::Thread(_)) => Some(false),
            None => None,
        }
    }
}

/// Starts one check against the sandbox whose init is `target.pid`.
pub fn start(check: &Check, target: &Target) -> Result<Running, HealthError> {
    let deadline = Instant::now() + check.timeout;
    let probe = match &check.kind {
        CheckKind::Exec(cmd) => Probe::Process(exec_probe(target, cmd)?),
        CheckKind::Http { port, path } => {
            Probe::Thread(http_probe(target.pid, *port, path, check.timeout)?)
        }
    };
    Ok(Running {
        deadline,
        probe,
        expired: false,
    })
}

/// Runs `cmd` inside the sandbox with no input and its output discarded.
fn exec_probe(target: &Target, cmd: &[String]) -> Result<Pid, HealthError> {
    let stdio = Stdio {
        stdin: spawn::dev_null()?,
        stdout: spawn::dev_null()?,
        stderr: spawn::dev_null()?,
    };
    Ok(enter::enter(target, cmd, stdio)?)
}

/// Creates a TCP socket inside the network namespace of `init_pid` and starts a thread that
/// does one HTTP GET on it. Returns our end of the stream the thread answers on.
fn http_probe(
    init_pid: i32,
    port: u16,
    path: &str,
    timeout: Duration,
) -> Result<UnixStream, HealthError> {
    let netns = |source| HealthError::Netns {
        pid: init_pid,
        source,
    };
    let ns = std::fs::File::open(format!("/proc/{init_pid}/ns/net")).map_err(netns)?;
    let sock = tcp_socket_in_netns(ns.as_fd())?;
    let (ours, theirs) = UnixStream::pair().map_err(HealthError::Thread)?;
    ours.set_nonblocking(true).map_err(HealthError::Thread)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nUser-Agent: nemoclaw-health\r\n\r\n");
    std::thread::Builder::new()
        .name("health-probe".into())
        .spawn(move || {
            let ok = http_ok(sock, port, &request, timeout);
            // MSG_NOSIGNAL: the supervisor may have given up on this probe and closed its end.
            let _ = send(theirs.as_raw_fd(), &[u8::from(ok)], MsgFlags::MSG_NOSIGNAL);
        })
        .map_err(HealthError::Thread)?;
    Ok(ours)
}

/// One GET on `sock` (made inside the sandbox's netns) to its `127.0.0.1:port`: true on a 2xx
/// or 3xx answer within `timeout` per step.
fn http_ok(sock: Socket, port: u16, request: &str, timeout: Duration) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    if sock.connect_timeout(&addr.into(), timeout).is_err() {
        return false;
    }
    let mut s = TcpStream::from(sock);
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
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
    fn probes_come_fast_in_the_start_period_until_the_first_pass() {
        let c = Check {
            kind: CheckKind::Http {
                port: 80,
                path: "/".into(),
            },
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            retries: 3,
            start_period: Duration::from_secs(30),
        };
        let mut h = HealthState::default();
        assert_eq!(c.next_delay(&h, Duration::ZERO), START_INTERVAL);
        assert_eq!(c.next_delay(&h, Duration::from_secs(31)), c.interval);
        h.record(true, 3, true);
        assert_eq!(c.next_delay(&h, Duration::from_secs(1)), c.interval);
        let no_period = Check {
            start_period: Duration::ZERO,
            ..c
        };
        assert_eq!(
            no_period.next_delay(&HealthState::default(), Duration::ZERO),
            no_period.interval
        );
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
