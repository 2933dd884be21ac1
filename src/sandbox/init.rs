//! The sandbox's pid 1: a tiny init that forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and
//! SIGUSR2 to the agent's process group, reaps every orphan, and exits with the agent's status
//! (128 + signal when the agent was killed). When it exits, the kernel kills whatever is left
//! in the sandbox.
//!
//! It is the sandbox's first process itself, continuing after setup (no exec: an exec of the
//! nemoclaw binary cost about 2 ms per start). It runs with the agent's uid, no capabilities,
//! no_new_privs and the seccomp filter, and keeps nothing of its parent that the agent could
//! reach: every descriptor above stderr is closed, and it is not dumpable, so `/proc/1/mem`,
//! `environ`, `fd`, `maps` and ptrace are refused to the agent (that needs CAP_SYS_PTRACE in the
//! host's user namespace; ptrace and process_vm_readv are also denied by seccomp). Only raw,
//! async-signal-safe syscalls run here: the parent may be multithreaded.

/// The signals the init forwards to the agent's process group. They are blocked from before the
/// agent is forked, so none is lost (a pid 1 drops signals it has no handler for, but keeps
/// blocked ones pending).
pub const FORWARDED_SIGNALS: [libc::c_int; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

extern "C" fn noop(_: libc::c_int) {}

/// Becomes the init for `agent` (the agent's pid, a child of the caller). Never returns.
///
/// # Safety
/// Must run in the sandbox's pid 1 after privileges are dropped, with [`FORWARDED_SIGNALS`] and
/// SIGCHLD blocked, in a single-threaded process whose memory nothing else uses (it closes
/// every descriptor above stderr and exits the process). Makes raw syscalls only.
pub unsafe fn pid1(agent: libc::pid_t) -> ! {
    // SAFETY: raw syscalls on stack values (sigset_t, sigaction and siginfo_t are C structs for
    // which all-zero is valid, and each is initialised before the kernel reads it); the handler
    // installed does nothing, so it is async-signal-safe; `_exit` leaves without running any of
    // the parent's atexit handlers.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in FORWARDED_SIGNALS.iter().chain(&[libc::SIGCHLD]) {
            libc::sigaddset(&mut set, *sig);
            // A pid 1 only receives signals it has a handler for; they stay blocked and are
            // taken synchronously with sigwaitinfo.
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = noop as extern "C" fn(libc::c_int) as usize;
            act.sa_flags = libc::SA_RESTART;
            libc::sigaction(*sig, &act, std::ptr::null_mut());
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        loop {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let sig = libc::sigwaitinfo(&set, &mut info);
            if sig < 0 {
                continue;
            }
            if sig != libc::SIGCHLD {
                if libc::kill(-agent, sig) != 0 {
                    libc::kill(agent, sig);
                }
                continue;
            }
            loop {
                let mut status = 0;
                let pid = libc::waitpid(-1, &mut status, libc::WNOHANG);
                if pid <= 0 {
                    break;
                }
                if pid == agent {
                    let code = if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else {
                        128 + libc::WTERMSIG(status)
                    };
                    libc::_exit(code);
                }
            }
        }
    }
}
