//! `nemoclaw exec NAME -- CMD [ARGS...]`: run a command inside a running sandbox, with the
//! agent's namespaces, cgroup, uid/gid, environment, no capabilities and its seccomp filter.
//! Like `run`, the command gets pipes (never the caller's terminal) and its exit code is ours.

use std::io::IsTerminal;
use std::os::fd::OwnedFd;

use anyhow::{anyhow, bail};
use clap::Args;
use nix::sys::signal::{kill, SigSet};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::run::{copy_stdin, pump, FORWARDED};
use super::{Context, Exit};
use crate::sandbox::enter::{self, Target};
use crate::sandbox::{spawn, Stdio};
use crate::supervisor::{self, client::Client, protocol::Request};

#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// The sandbox name.
    pub name: String,
    /// The command (after `--`).
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub fn run(a: ExecArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let home = ctx.home()?;
    let name = a.name.as_str();
    if !supervisor::is_running(&home, name) {
        bail!("sandbox `{name}` is not running (start it with `nemoclaw start {name}`)");
    }
    let mut c = Client::connect(&supervisor::control_socket(&home, name))?;
    let r = c.request(Request::ExecInfo)?;
    let info = r
        .exec
        .ok_or_else(|| anyhow!("sandbox `{name}`: {}", r.error.unwrap_or_default()))?;
    drop(c);
    let target = Target {
        pid: info.pid,
        uid: info.uid,
        gid: info.gid,
        workdir: info.workdir,
        env: info.env,
        cgroup_dirs: info.cgroup_dirs,
        seccomp_deny: info.seccomp_deny,
    };
    let (out_r, out_w) = spawn::output_pipe()?;
    let (err_r, err_w) = spawn::output_pipe()?;
    let (stdin_child, stdin_feed): (OwnedFd, Option<OwnedFd>) = if std::io::stdin().is_terminal() {
        (spawn::dev_null()?, None)
    } else {
        let (r, w) = spawn::output_pipe()?;
        (r, Some(w))
    };
    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(s);
    }
    mask.thread_block()?;
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC)?;
    let pid = enter::enter(
        &target,
        &a.command,
        Stdio {
            stdin: stdin_child,
            stdout: out_w,
            stderr: err_w,
        },
    )
    .map_err(|e| {
        if enter::is_not_found(&e) {
            anyhow!(
                "command: `{}` is not found inside sandbox `{name}`",
                a.command[0]
            )
        } else {
            anyhow!(e).context(format!("cannot run `{}` in sandbox `{name}`", a.command[0]))
        }
    })?;
    if let Some(w) = stdin_feed {
        std::thread::spawn(move || copy_stdin(w));
    }
    pump(&out_r, &err_r, &sigfd, &|sig| {
        let _ = kill(Pid::from_raw(-pid.as_raw()), sig);
    });
    let code = loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, c)) => break c,
            Ok(WaitStatus::Signaled(_, s, _)) => break 128 + s as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    std::process::exit(code);
}
