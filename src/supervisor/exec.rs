//! `exec` into a running sandbox: a command joins the agent's namespaces, cgroup, uid/gid,
//! environment and seccomp filter, with no capabilities. Like `run`, it gets pipes (never the
//! caller's terminal), our stdin, and the signals we receive; its exit code is returned.

use nix::sys::signal::kill;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::client::{ask, AskError};
use super::foreground::{copy_stdin, pump, Foreground, ForegroundError};
use super::protocol::Request;
use crate::home::Home;
use crate::sandbox::enter::{self, Target};
use crate::sandbox::spawn::SpawnError;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Ask(#[from] AskError),
    #[error(transparent)]
    Foreground(#[from] ForegroundError),
    #[error("command: `{command}` is not found inside sandbox `{name}`")]
    NotFound { command: String, name: String },
    #[error("cannot run `{command}` in sandbox `{name}`")]
    Enter {
        command: String,
        name: String,
        #[source]
        source: SpawnError,
    },
    #[error("waiting for the command")]
    Wait(#[source] nix::errno::Errno),
}

/// Runs `command` in the running sandbox `name` and returns its exit code (128 + the signal
/// that killed it).
pub fn exec(home: &Home, name: &str, command: &[String]) -> Result<i32, ExecError> {
    let target = target(home, name)?;
    let Foreground {
        out_r,
        err_r,
        stdin_feed,
        sigfd,
        stdio,
        ..
    } = Foreground::new()?;
    let pid = enter::enter(&target, command, stdio).map_err(|source| {
        let command = command.first().cloned().unwrap_or_default();
        let name = name.to_string();
        if enter::is_not_found(&source) {
            ExecError::NotFound { command, name }
        } else {
            ExecError::Enter {
                command,
                name,
                source,
            }
        }
    })?;
    if let Some(w) = stdin_feed {
        std::thread::spawn(move || copy_stdin(w));
    }
    pump(&out_r, &err_r, &sigfd, &|sig| {
        let _ = kill(Pid::from_raw(-pid.as_raw()), sig);
    });
    wait_exit(pid)
}

/// What joining the agent takes, from its supervisor.
fn target(home: &Home, name: &str) -> Result<Target, ExecError> {
    let info = ask(home, name, Request::ExecInfo, None, |r| r.exec.take())?;
    Ok(Target {
        pid: info.pid,
        uid: info.uid,
        gid: info.gid,
        workdir: info.workdir,
        env: info.env,
        cgroup_dirs: info.cgroup_dirs,
        seccomp_deny: info.seccomp_deny,
    })
}

fn wait_exit(pid: Pid) -> Result<i32, ExecError> {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, c)) => return Ok(c),
            Ok(WaitStatus::Signaled(_, s, _)) => return Ok(128 + s as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(ExecError::Wait(e)),
        }
    }
}
