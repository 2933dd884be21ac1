//! `nemoclaw run BLUEPRINT.yaml [-- CMD ARGS...]`: run a command (or the blueprint's agent) in
//! the blueprint's sandbox in the foreground. The sandbox gets its own session and pipes, never
//! the caller's terminal; its stdout and stderr are streamed; `run` exits with the command's
//! exit code (128 + signal when it was killed). SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to
//! `run` are forwarded to the sandbox.

use std::io::{IsTerminal, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use anyhow::{anyhow, Context as _};
use clap::Args;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::{Context, Exit};
use crate::sandbox::{instance, spawn, LoopbackOnly, NetworkSetup, SpawnOptions, Stdio};
use crate::supervisor::gateway::GatewayHook;
use crate::supervisor::pidlock::{PidLock, PidLockError};

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The blueprint file.
    pub blueprint: PathBuf,
    /// The command to run instead of the blueprint's agent (after `--`).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
    /// Benchmark only: no cgroup (weakens the sandbox).
    #[arg(long, hide = true)]
    pub bench_no_cgroups: bool,
    /// Benchmark only: no seccomp filter (weakens the sandbox).
    #[arg(long, hide = true)]
    pub bench_no_seccomp: bool,
    /// Benchmarks only: no gateway (the sandbox keeps only `lo`).
    #[arg(long, hide = true)]
    pub bench_no_gateway: bool,
}

pub(crate) const FORWARDED: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

pub fn run(a: RunArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let entry = match crate::blueprint::set::load_one(&a.blueprint) {
        Ok(e) => e,
        Err(diags) => {
            eprint!("{}", crate::blueprint::diag::render_human(&diags, |_| None));
            return Ok(Exit::Failure);
        }
    };
    let bp = &entry.blueprint;
    let name = bp.metadata.name.clone();
    let home = ctx.home()?;
    home.ensure()?;
    let run_dir = home.run_dir(&name);
    crate::home::create_dir_private(&run_dir)?;
    // One sandbox per name at a time: `run` holds the same lock a supervisor holds.
    let _lock = match PidLock::try_acquire(&run_dir.join("supervisor.pid"), "nemoclaw run") {
        Ok(l) => l,
        Err(PidLockError::Held { pid, what }) => {
            return Err(anyhow!("sandbox `{name}` is already running (process {pid}, {what}): stop it first, or use `nemoclaw exec {name} -- CMD`"))
        }
        Err(e) => return Err(e.into()),
    };
    let command = (!a.command.is_empty()).then(|| a.command.clone());
    let spec = instance::spec_for(&home, bp, command)
        .with_context(|| format!("{}", a.blueprint.display()))?;

    let Foreground {
        out_r,
        err_r,
        stdin_feed,
        mask,
        sigfd,
        stdio,
    } = Foreground::new()?;

    let opts = SpawnOptions {
        cgroups: !a.bench_no_cgroups,
        seccomp: !a.bench_no_seccomp,
    };
    // The same gateway a supervisor runs (built after the signals are blocked, so its threads
    // inherit the mask).
    let mut spec = spec;
    let mut net: Box<dyn NetworkSetup> = if a.bench_no_gateway {
        Box::new(LoopbackOnly)
    } else {
        Box::new(
            GatewayHook::new(&home, &name, bp, &a.blueprint).map_err(|e| {
                anyhow!("cannot start sandbox `{name}`: {}", crate::error_chain(&e))
            })?,
        )
    };
    spec.env.extend(net.agent_env());
    let result = spawn::spawn(&spec, &opts, stdio, net.as_mut());
    let mut sandbox = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&mask), None);
            return Err(anyhow!(e).context(format!("cannot start sandbox `{name}`")));
        }
    };
    if let Some(w) = stdin_feed {
        std::thread::spawn(move || copy_stdin(w));
    }
    pump(&out_r, &err_r, &sigfd, &|sig| {
        let _ = sandbox.signal(sig);
    });
    let status = sandbox.wait()?;
    let oom = sandbox.teardown()?;
    if oom {
        eprintln!(
            "nemoclaw: sandbox `{name}` reached its memory limit (resources.memory: {}); the kernel killed a process",
            bp.resources.memory.map(|m| m.to_string()).unwrap_or_default()
        );
    }
    let _ = std::io::stdout().flush();
    drop(_lock);
    std::process::exit(status.code());
}

/// Copies the sandbox's stdout/stderr to ours until both close; forwards signals meanwhile.
/// What a foreground sandbox command needs from its caller: pipes for its output (never the
/// caller's terminal), stdin forwarded unless it is a terminal, and the forwarded signals
/// blocked and readable from a signalfd.
pub(crate) struct Foreground {
    pub out_r: OwnedFd,
    pub err_r: OwnedFd,
    pub stdin_feed: Option<OwnedFd>,
    pub mask: SigSet,
    pub sigfd: SignalFd,
    /// The child's ends.
    pub stdio: Stdio,
}

impl Foreground {
    pub(crate) fn new() -> anyhow::Result<Foreground> {
        let (out_r, out_w) = spawn::output_pipe()?;
        let (err_r, err_w) = spawn::output_pipe()?;
        // A terminal is never handed over (TIOCSTI); an empty stdin (/dev/null, as under cron
        // or systemd) needs no pipe and no copying thread.
        let (stdin_child, stdin_feed): (OwnedFd, Option<OwnedFd>) =
            if std::io::stdin().is_terminal() || stdin_is_dev_null() {
                (spawn::dev_null()?, None)
            } else {
                let (r, w) = spawn::output_pipe()?;
                (r, Some(w))
            };
        let mut mask = SigSet::empty();
        for s in FORWARDED {
            mask.add(s);
        }
        mask.thread_block().context("cannot block signals")?;
        let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC).context("signalfd")?;
        let stdio = Stdio {
            stdin: stdin_child,
            stdout: out_w,
            stderr: err_w,
        };
        Ok(Foreground {
            out_r,
            err_r,
            stdin_feed,
            mask,
            sigfd,
            stdio,
        })
    }
}

/// Whether our stdin is the null device (character device 1:3), which has nothing to forward.
fn stdin_is_dev_null() -> bool {
    use nix::sys::stat::{fstat, SFlag};
    fstat(std::io::stdin()).is_ok_and(|st| {
        SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR
            && st.st_rdev == libc::makedev(1, 3)
    })
}

pub(crate) fn pump(out: &OwnedFd, err: &OwnedFd, sigfd: &SignalFd, forward: &dyn Fn(Signal)) {
    let mut open = [true, true];
    // Never zeroed: only what the kernel writes into it is touched (a silent command costs no
    // page of it).
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let pair = [out, err];
    while open[0] || open[1] {
        let mut fds = Vec::with_capacity(3);
        let mut which = Vec::with_capacity(3);
        for (i, fd) in pair.iter().enumerate() {
            if open[i] {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                which.push(i);
            }
        }
        fds.push(PollFd::new(sigfd.as_fd(), PollFlags::POLLIN));
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        if ready[fds.len() - 1] {
            if let Ok(Some(info)) = sigfd.read_signal() {
                if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
                    forward(sig);
                }
            }
        }
        for (k, &i) in which.iter().enumerate() {
            if !ready[k] {
                continue;
            }
            let fd = if i == 0 { out } else { err };
            match read_into_spare(fd, &mut buf) {
                Ok(0) => open[i] = false,
                Ok(n) => {
                    let r = if i == 0 {
                        std::io::stdout()
                            .write_all(&buf[..n])
                            .and_then(|_| std::io::stdout().flush())
                    } else {
                        std::io::stderr().write_all(&buf[..n])
                    };
                    if r.is_err() {
                        // Our reader went away; keep draining so the sandbox is not blocked.
                    }
                }
                Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {}
                Err(_) => open[i] = false,
            }
        }
    }
}

/// Reads from `fd` into `buf`'s spare capacity (cleared first); `buf` then holds what was read.
fn read_into_spare(fd: &OwnedFd, buf: &mut Vec<u8>) -> Result<usize, nix::errno::Errno> {
    use std::os::fd::AsRawFd;
    buf.clear();
    // SAFETY: the kernel writes at most `capacity` bytes into the vector's own allocation, and
    // the length is set to exactly the number of bytes it wrote.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.capacity()) };
    if n < 0 {
        return Err(nix::errno::Errno::last());
    }
    // SAFETY: the first `n` bytes were just written by read(2).
    unsafe { buf.set_len(n as usize) };
    Ok(n as usize)
}

pub(crate) fn copy_stdin(w: OwnedFd) {
    let mut f = std::fs::File::from(w);
    let mut buf = [0u8; 16 * 1024];
    let mut stdin = std::io::stdin().lock();
    loop {
        match stdin.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if f.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}
