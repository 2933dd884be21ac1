//! A running sandbox: its init's pid and cgroup, waiting for it, and tearing it down.

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::sandbox::cgroups::SandboxCgroup;

use super::SpawnError;

/// A running sandbox.
#[derive(Debug)]
pub struct Sandbox {
    /// The sandbox init's pid on the host.
    pub pid: Pid,
    pub cgroup: Option<SandboxCgroup>,
    reaped: bool,
}

/// How a sandbox ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The shell convention: the code, or 128 + the signal.
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

impl Sandbox {
    /// A sandbox whose init `pid` was just cloned, not yet reaped.
    pub(super) fn new(pid: Pid, cgroup: Option<SandboxCgroup>) -> Sandbox {
        Sandbox {
            pid,
            cgroup,
            reaped: false,
        }
    }

    /// Sends a signal to the sandbox init (which forwards it to the agent).
    pub fn signal(&self, sig: Signal) -> nix::Result<()> {
        kill(self.pid, sig)
    }

    /// Waits for the init (and so every process of the sandbox) to exit.
    pub fn wait(&mut self) -> Result<Exit, SpawnError> {
        loop {
            match waitpid(self.pid, None) {
                Ok(WaitStatus::Exited(_, c)) => {
                    self.reaped = true;
                    return Ok(Exit::Code(c));
                }
                Ok(WaitStatus::Signaled(_, s, _)) => {
                    self.reaped = true;
                    return Ok(Exit::Signal(s as i32));
                }
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    return Err(SpawnError::Io {
                        what: "waiting for the sandbox".into(),
                        source: e.into(),
                    })
                }
            }
        }
    }

    /// Reaps the init if it has exited; `None` while it runs.
    pub fn try_wait(&mut self) -> Result<Option<Exit>, SpawnError> {
        if self.reaped {
            return Ok(None);
        }
        match waitpid(self.pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => {
                self.reaped = true;
                Ok(Some(Exit::Code(c)))
            }
            Ok(WaitStatus::Signaled(_, s, _)) => {
                self.reaped = true;
                Ok(Some(Exit::Signal(s as i32)))
            }
            Ok(_) => Ok(None),
            Err(nix::errno::Errno::ECHILD) => {
                self.reaped = true;
                Ok(Some(Exit::Signal(libc::SIGKILL)))
            }
            Err(e) => Err(SpawnError::Io {
                what: "waiting for the sandbox".into(),
                source: e.into(),
            }),
        }
    }

    /// Removes the cgroup (after [`Sandbox::wait`]). Returns whether the memory limit was hit.
    pub fn teardown(&mut self) -> Result<bool, SpawnError> {
        let mut oom = false;
        if let Some(cg) = self.cgroup.take() {
            oom = cg.oom_killed();
            cg.remove()?;
        }
        Ok(oom)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
        if let Some(cg) = self.cgroup.take() {
            let _ = cg.remove();
        }
    }
}
