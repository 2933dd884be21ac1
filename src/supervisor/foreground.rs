//! A sandbox in the foreground of its caller (`nemoclaw run`, `nemoclaw exec`): its stdout and
//! stderr on pipes copied to ours (never our terminal), our stdin forwarded unless it is a
//! terminal, and SIGINT, SIGTERM, SIGHUP and SIGQUIT read from a signalfd and forwarded.

use std::io::{IsTerminal, Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::sandbox::spawn::{self, SpawnError};
use crate::sandbox::Stdio;

/// The signals sent to a foreground command that go on to its sandbox.
pub const FORWARDED: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

#[derive(Debug, thiserror::Error)]
pub enum ForegroundError {
    #[error(transparent)]
    Pipe(#[from] SpawnError),
    #[error("cannot block signals")]
    BlockSignals(#[source] nix::errno::Errno),
    #[error("signalfd")]
    Signalfd(#[source] nix::errno::Errno),
}

/// What a foreground sandbox command needs from its caller: pipes for its output (never the
/// caller's terminal), stdin forwarded unless it is a terminal, and the forwarded signals
/// blocked and readable from a signalfd.
pub struct Foreground {
    pub out_r: OwnedFd,
    pub err_r: OwnedFd,
    pub stdin_feed: Option<OwnedFd>,
    pub mask: SigSet,
    pub sigfd: SignalFd,
    /// The child's ends.
    pub stdio: Stdio,
}

impl Foreground {
    /// The set-up for a command whose caller reads the signals with blocking reads (`exec`).
    pub fn new() -> Result<Foreground, ForegroundError> {
        Foreground::with_signals(&FORWARDED, SfdFlags::SFD_CLOEXEC)
    }

    /// The set-up for the supervision loop: SIGCHLD too, and a non-blocking signalfd.
    pub(crate) fn for_loop() -> Result<Foreground, ForegroundError> {
        let mut signals = FORWARDED.to_vec();
        signals.push(Signal::SIGCHLD);
        Foreground::with_signals(&signals, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
    }

    fn with_signals(signals: &[Signal], flags: SfdFlags) -> Result<Foreground, ForegroundError> {
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
        for s in signals {
            mask.add(*s);
        }
        mask.thread_block().map_err(ForegroundError::BlockSignals)?;
        let sigfd = SignalFd::with_flags(&mask, flags).map_err(ForegroundError::Signalfd)?;
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

/// Copies the sandbox's stdout/stderr to ours until both close; forwards signals meanwhile.
pub fn pump(out: &OwnedFd, err: &OwnedFd, sigfd: &SignalFd, forward: &dyn Fn(Signal)) {
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
pub(crate) fn read_into_spare(fd: &OwnedFd, buf: &mut Vec<u8>) -> Result<usize, nix::errno::Errno> {
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

/// Copies our stdin into `w` (the sandbox's stdin) until either side closes.
pub fn copy_stdin(w: OwnedFd) {
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
