//! The sandbox's pid 1 (`nemoclaw __init --agent PID`, or `nemoclaw __init -- CMD ARGS...` to
//! start the command itself), executed from the read-only nemoclaw binary inside the sandbox,
//! already unprivileged and under seccomp. The sandbox setup forks the agent (in its own process
//! group) just before executing the init, so both start in parallel; the init forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to that
//! group, reaps every orphan, and exits with the agent's status (128 + signal when the agent
//! was killed). When it exits, the kernel kills whatever is left in the sandbox.
//!
//! It is a fresh exec, so none of the supervisor's memory (credentials included) is inside the
//! sandbox.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use nix::sys::signal::{
    kill, sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal,
};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// The hidden argument that selects this mode (checked before the CLI parser runs).
pub const INIT_ARG: &str = "__init";
/// The same, for the no-allocation exec in the sandbox setup.
pub const INIT_ARG_C: &std::ffi::CStr = c"__init";
/// The signals the init forwards to the agent's process group (blocked from before its exec, so
/// none is lost while it starts).
pub const FORWARDED_SIGNALS: [libc::c_int; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

extern "C" fn noop(_: libc::c_int) {}

/// Runs the init. `args` are the process arguments after `__init`.
pub fn main(args: &[OsString]) -> ExitCode {
    let given = match args {
        [flag, pid, ..] if flag == "--agent" => pid
            .to_str()
            .and_then(|p| p.parse::<i32>().ok())
            .map(Pid::from_raw),
        _ => None,
    };
    let argv: Vec<&OsString> = args
        .iter()
        .skip_while(|a| a.as_os_str() != "--")
        .skip(1)
        .collect();
    if given.is_none() && argv.is_empty() {
        eprintln!("nemoclaw init: no command given");
        return ExitCode::from(127);
    }
    // A pid 1 only receives signals it has a handler for, so install one, then block them all
    // and take them synchronously with sigwait.
    let mut set = SigSet::empty();
    for s in FORWARDED.iter().copied().chain([Signal::SIGCHLD]) {
        set.add(s);
        let act = SigAction::new(
            SigHandler::Handler(noop),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        // SAFETY: installs a handler that does nothing (async-signal-safe by construction).
        let _ = unsafe { sigaction(s, &act) };
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
    let agent = match given {
        Some(pid) => pid,
        None => match spawn_agent(&argv) {
            Ok(pid) => pid,
            Err(code) => return code,
        },
    };
    forward_and_reap(&set, agent)
}

/// Starts the command (the `-- CMD` form).
fn spawn_agent(argv: &[&OsString]) -> Result<Pid, ExitCode> {
    let prog = argv[0];

    // The agent gets its own process group and an empty signal mask (std's posix_spawn path
    // would keep our blocked set, so the mask is reset in pre_exec).
    let mut cmd = std::process::Command::new(prog);
    cmd.args(&argv[1..]).process_group(0);
    // SAFETY: the closure runs in the forked child before exec and only calls sigprocmask,
    // which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
            Ok(())
        });
    }
    match cmd.spawn() {
        Ok(c) => Ok(Pid::from_raw(c.id() as i32)),
        Err(e) => {
            eprintln!(
                "nemoclaw: cannot execute `{}` in the sandbox: {e}",
                prog.to_string_lossy()
            );
            Err(ExitCode::from(
                if e.kind() == std::io::ErrorKind::NotFound {
                    127
                } else {
                    126
                },
            ))
        }
    }
}

/// Forwards signals to the agent's process group and reaps everything until the agent exits;
/// returns its status.
fn forward_and_reap(set: &SigSet, agent: Pid) -> ExitCode {
    loop {
        let sig = match set.wait() {
            Ok(s) => s,
            Err(_) => continue,
        };
        if sig != Signal::SIGCHLD {
            if kill(Pid::from_raw(-agent.as_raw()), sig).is_err() {
                let _ = kill(agent, sig);
            }
            continue;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, c)) if p == agent => return ExitCode::from(c as u8),
                Ok(WaitStatus::Signaled(p, s, _)) if p == agent => {
                    return ExitCode::from(128 + s as u8)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}
