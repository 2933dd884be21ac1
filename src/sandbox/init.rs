//! The sandbox's pid 1 (`nemoclaw __init -- CMD ARGS...`), executed from the read-only nemoclaw
//! binary inside the sandbox, already unprivileged and under seccomp. It starts the agent in its
//! own process group, forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to that
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
    let argv: Vec<&OsString> = args
        .iter()
        .skip_while(|a| a.as_os_str() != "--")
        .skip(1)
        .collect();
    let Some(prog) = argv.first() else {
        eprintln!("nemoclaw init: no command given");
        return ExitCode::from(127);
    };
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

    let mut cmd = std::process::Command::new(prog);
    cmd.args(&argv[1..]);
    cmd.arg0(prog);
    // SAFETY: the closure runs in the forked child before exec and only calls setpgid and
    // sigprocmask, both async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setpgid(0, 0);
            let empty = SigSet::empty();
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&empty), None)?;
            Ok(())
        });
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "nemoclaw: cannot execute `{}` in the sandbox: {e}",
                prog.to_string_lossy()
            );
            return ExitCode::from(if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            });
        }
    };
    let agent = Pid::from_raw(child.id() as i32);
    drop(child);
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
