//! `exec` into a running sandbox: a command joins the agent's namespaces, cgroup, uid/gid,
//! environment and seccomp filter, with no capabilities. Like `run`, it gets pipes (never the
//! caller's terminal), our stdin, and the signals we receive; its exit code is returned.

use nix::sys::signal::kill;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::client::Client;
use super::foreground::{copy_stdin, pump, Foreground, ForegroundError};
use super::protocol::Request;
use super::SupervisorError;
use crate::home::Home;
use crate::sandbox::enter::{self, Target};
use crate::sandbox::spawn::SpawnError;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("sandbox `{0}` is not running (start it with `nemoclaw start {0}`)")]
    NotRunning(String),
    #[error("sandbox `{name}`: {message}")]
    Refused { name: String, message: String },
    #[error("sandbox `{0}`")]
    Control(String, #[source] Box<SupervisorError>),
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
    if !super::is_running(home, name) {
        return Err(ExecError::NotRunning(name.to_string()));
    }
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
    let control = |e| ExecError::Control(name.to_string(), Box::new(e));
    let mut c = Client::connect(&home.control_socket(name)).map_err(control)?;
    let r = c.request(Request::ExecInfo).map_err(control)?;
    let info = r.exec.ok_or_else(|| ExecError::Refused {
        name: name.to_string(),
        message: r.error.unwrap_or_default(),
    })?;
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
