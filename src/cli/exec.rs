//! `nemoclaw exec NAME -- CMD [ARGS...]`: run a command inside a running sandbox, with the
//! agent's namespaces, cgroup, uid/gid, environment, no capabilities and its seccomp filter.
//! Like `run`, the command gets pipes (never the caller's terminal) and its exit code is ours.

use anyhow::{anyhow, bail};
use clap::Args;
use nix::sys::signal::kill;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::run::{copy_stdin, pump, Foreground};
use super::{Context, Exit};
use crate::sandbox::enter::{self, Target};
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
    let mut c = Client::connect(&home.control_socket(name))?;
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
    let Foreground {
        out_r,
        err_r,
        stdin_feed,
        sigfd,
        stdio,
        ..
    } = Foreground::new()?;
    let pid = enter::enter(&target, &a.command, stdio).map_err(|e| {
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
