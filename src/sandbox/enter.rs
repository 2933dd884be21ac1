//! Entering a running sandbox (`nemoclaw exec`): same namespaces, cgroup, uid/gid, no
//! capabilities, no_new_privs and seccomp as the agent.
//!
//! The caller forks a helper that joins the sandbox's cgroup and namespaces (user last: after
//! it, nothing owned by the host's user namespace can be joined), then forks again so the
//! command lands in the sandbox's pid namespace. The helper stays outside, waits, and exits with
//! the command's status. As in [`super::child`], the forked code only makes raw syscalls on
//! data prepared before the fork.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::unistd::Pid;

use super::child::{self, CStringArray, ChildFds};
use super::seccomp::{self, Filters};
use super::spawn::{cstr, exec_candidates, last_cap, pipe, SpawnError, Stdio};

/// What is needed to join a sandbox (the supervisor's `exec_info`).
#[derive(Debug, Clone)]
pub struct Target {
    /// The sandbox init's host pid.
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
    pub workdir: String,
    pub env: Vec<(String, String)>,
    pub cgroup_dirs: Vec<PathBuf>,
    pub seccomp_deny: Vec<String>,
}

const STEP_CGROUP: u32 = 20_000;
const STEP_SETNS: u32 = 20_001;
const STEP_FORK: u32 = 20_002;

/// The command was not found inside the sandbox (ENOENT on every PATH candidate).
pub fn is_not_found(e: &SpawnError) -> bool {
    matches!(e, SpawnError::Setup { step, err } if step == child::step_name(child::STEP_EXEC) && *err == nix::errno::Errno::ENOENT)
}

/// What the exec helper needs, all prepared before the fork (the forked code only reads it).
struct Helper {
    /// The sandbox's namespaces, joined in this order (user last).
    ns: Vec<OwnedFd>,
    /// The `cgroup.procs` files of the sandbox's cgroup.
    procs: Vec<CString>,
    filters: Filters,
    argv: CStringArray,
    envp: CStringArray,
    /// The paths execve tries for `argv[0]`.
    candidates: Vec<CString>,
    workdir: CString,
    last_cap: u32,
    uid: u32,
    gid: u32,
}

impl Helper {
    fn prepare(t: &Target, argv: &[String]) -> Result<Helper, SpawnError> {
        let mut ns = Vec::new();
        for kind in ["ipc", "uts", "net", "cgroup", "pid", "mnt", "user"] {
            let f = File::open(format!("/proc/{}/ns/{kind}", t.pid)).map_err(|source| {
                SpawnError::Io {
                    what: format!("cannot open the sandbox's {kind} namespace"),
                    source,
                }
            })?;
            ns.push(OwnedFd::from(f));
        }
        let procs: Vec<CString> = t
            .cgroup_dirs
            .iter()
            .map(|d| cstr(d.join("cgroup.procs").as_os_str().as_bytes()))
            .collect::<Result<_, _>>()?;
        let filters = seccomp::build(&t.seccomp_deny)?;
        let argv_c = argv.iter().map(cstr).collect::<Result<_, _>>()?;
        let env_c = t
            .env
            .iter()
            .map(|(k, v)| cstr(format!("{k}={v}")))
            .collect::<Result<_, _>>()?;
        let arg0 = argv.first().ok_or(SpawnError::EmptyCommand)?;
        let path = t
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str());
        let candidates = exec_candidates(arg0, path, &t.workdir)
            .into_iter()
            .map(cstr)
            .collect::<Result<_, _>>()?;
        Ok(Helper {
            ns,
            procs,
            filters,
            argv: CStringArray::new(argv_c),
            envp: CStringArray::new(env_c),
            candidates,
            workdir: cstr(&t.workdir)?,
            last_cap: last_cap(),
            uid: t.uid,
            gid: t.gid,
        })
    }
}

/// Starts `argv` inside the sandbox. Returns the helper's pid; its exit status is the
/// command's (128 + signal when killed). The caller should block SIGINT/SIGTERM/SIGHUP/SIGQUIT
/// first and forward them to the helper's process group (`-pid`).
pub fn enter(t: &Target, argv: &[String], stdio: Stdio) -> Result<Pid, SpawnError> {
    let helper = Helper::prepare(t, argv)?;
    let (rep_r, rep_w) = pipe()?;
    let fds = ChildFds {
        stdin: stdio.stdin.as_raw_fd(),
        stdout: stdio.stdout.as_raw_fd(),
        stderr: stdio.stderr.as_raw_fd(),
        go: -1,
        report: rep_w.as_raw_fd(),
    };
    // SAFETY: the child runs only raw, async-signal-safe syscalls on data prepared above (no
    // allocation, no locks: sound even when the caller has other threads, as the supervisor
    // does) and never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(SpawnError::Io {
            what: "fork".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    if pid == 0 {
        // SAFETY: we are the freshly forked, single-threaded child; `helper` and `fds` are our
        // copies, prepared before the fork, and the descriptors in them are open here.
        unsafe { helper_main(&helper, &fds) }
    }
    drop((rep_w, stdio));
    read_exec_report(Pid::from_raw(pid), File::from(rep_r))
}

/// The forked helper: joins the sandbox, forks the command into its pid namespace, waits for
/// it and exits with its status.
///
/// # Safety
/// Must run in a freshly forked, single-threaded child, with `h` and `fds` prepared before the
/// fork and the descriptors in them open. Makes raw syscalls only.
unsafe fn helper_main(h: &Helper, fds: &ChildFds) -> ! {
    // SAFETY: the caller's contract (single-threaded forked child, data prepared before it).
    unsafe { join_sandbox(h, fds) };
    // SAFETY: we are single-threaded; the child continues below with raw syscalls only.
    let inner = unsafe { libc::fork() };
    if inner < 0 {
        child::fail(fds, STEP_FORK, child::errno());
    }
    if inner > 0 {
        // SAFETY: `inner` is our child; the caller's contract lets us close our descriptors.
        unsafe { wait_and_pass_on(inner) }
    }
    // SAFETY: the caller's contract; we are now the command's process inside the sandbox.
    unsafe { become_command(h, fds) }
}

/// Stdio and a session of its own, then the sandbox's cgroup, no supplementary groups, and
/// its namespaces (user last).
///
/// # Safety
/// As [`helper_main`].
unsafe fn join_sandbox(h: &Helper, fds: &ChildFds) {
    // SAFETY: raw syscalls with integers, descriptors opened before the fork, and the
    // NUL-terminated `cgroup.procs` paths of `h` (alive for each call); the written byte is a
    // static.
    unsafe {
        child::check(fds, child::STEP_SETSID, libc::setsid());
        for (from, to) in [(fds.stdin, 0), (fds.stdout, 1), (fds.stderr, 2)] {
            if from != to {
                child::check(fds, child::STEP_STDIO, libc::dup2(from, to));
            }
        }
        child::check(
            fds,
            child::STEP_STDIO,
            child::syscall_ret(libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )),
        );
        for p in &h.procs {
            let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                child::fail(fds, STEP_CGROUP, child::errno());
            }
            libc::close(fd);
        }
        child::check(
            fds,
            child::STEP_SETGROUPS,
            child::syscall_ret(libc::syscall(
                libc::SYS_setgroups,
                0usize,
                std::ptr::null::<libc::gid_t>(),
            )),
        );
        for fd in &h.ns {
            child::check(fds, STEP_SETNS, libc::setns(fd.as_raw_fd(), 0));
        }
    }
}

/// The helper's part once the command is forked: keep nothing of the caller's (a pipe end held
/// here would keep the command's stdin open), wait, and exit with the command's status.
///
/// # Safety
/// `inner` must be our child, and nothing else in this process may use its descriptors.
unsafe fn wait_and_pass_on(inner: libc::pid_t) -> ! {
    // SAFETY: close_range and waitpid with integers and a live stack int; `_exit` skips the
    // caller's atexit handlers.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        let mut status = 0;
        while libc::waitpid(inner, &mut status, 0) < 0 && child::errno() == libc::EINTR {}
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        };
        libc::_exit(code)
    }
}

/// The command's process: no capabilities, the agent's ids, the workdir, no_new_privs and
/// seccomp, an empty signal mask, then execve of each candidate.
///
/// # Safety
/// As [`helper_main`], in the process forked inside the sandbox's pid namespace.
unsafe fn become_command(h: &Helper, fds: &ChildFds) -> ! {
    let (uid, gid) = (h.uid, h.gid);
    // SAFETY: raw syscalls with integers, stack values, and `h`'s NUL-terminated strings and
    // NULL-terminated argv/envp arrays (alive: `h` outlives every call); the set*id calls are
    // the raw syscalls, right in this single-threaded process; every path ends in execve or
    // `fail` (which exits).
    unsafe {
        child::check(fds, child::STEP_CAPS, child::drop_bounding(h.last_cap));
        child::check(
            fds,
            child::STEP_SETID,
            child::syscall_ret(libc::syscall(libc::SYS_setresgid, gid, gid, gid)),
        );
        child::check(
            fds,
            child::STEP_SETID,
            child::syscall_ret(libc::syscall(libc::SYS_setresuid, uid, uid, uid)),
        );
        child::check(fds, child::STEP_CAPS, child::clear_caps());
        if !child::verify_no_caps(h.last_cap) {
            child::fail(fds, child::STEP_VERIFY, libc::EPERM);
        }
        child::check(
            fds,
            child::STEP_PDEATHSIG,
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ),
        );
        child::check(fds, child::STEP_WORKDIR, libc::chdir(h.workdir.as_ptr()));
        child::check(
            fds,
            child::STEP_NNP,
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
        );
        if let Err(e) = seccomp::install(&h.filters) {
            child::fail(fds, child::STEP_SECCOMP, e);
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        let mut err = libc::ENOENT;
        for c in &h.candidates {
            libc::execve(c.as_ptr(), h.argv.as_ptr(), h.envp.as_ptr());
            let e = child::errno();
            if e != libc::ENOENT && e != libc::ENOTDIR {
                err = e;
            }
        }
        child::fail(fds, child::STEP_EXEC, err)
    }
}

/// Reads the helper's report: EOF once the command was executed, or a failed step.
fn read_exec_report(pid: Pid, mut rep: File) -> Result<Pid, SpawnError> {
    let mut buf = [0u8; 12];
    let n = std::io::Read::read(&mut rep, &mut buf).map_err(|e| SpawnError::Io {
        what: "exec report".into(),
        source: e,
    })?;
    if n == 12 {
        let w = |i: usize| u32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let _ = nix::sys::wait::waitpid(pid, None);
        let step = match w(4) {
            STEP_CGROUP => "join the sandbox's cgroup",
            STEP_SETNS => "join the sandbox's namespaces",
            STEP_FORK => "fork inside the sandbox",
            s => child::step_name(s),
        };
        return Err(SpawnError::Setup {
            step: step.into(),
            err: nix::errno::Errno::from_raw(w(8) as i32),
        });
    }
    Ok(pid)
}
