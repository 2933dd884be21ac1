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
use super::spawn::{cstr, exec_candidates, last_cap, SpawnError, Stdio};

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

/// Starts `argv` inside the sandbox. Returns the helper's pid; its exit status is the
/// command's (128 + signal when killed). The caller should block SIGINT/SIGTERM/SIGHUP/SIGQUIT
/// first and forward them to the helper's process group (`-pid`).
pub fn enter(t: &Target, argv: &[String], stdio: Stdio) -> Result<Pid, SpawnError> {
    let io = |what: &str| {
        let what = what.to_string();
        move |source| SpawnError::Io { what, source }
    };
    let mut ns = Vec::new();
    for kind in ["ipc", "uts", "net", "cgroup", "pid", "mnt", "user"] {
        let f = File::open(format!("/proc/{}/ns/{kind}", t.pid))
            .map_err(io(&format!("cannot open the sandbox's {kind} namespace")))?;
        ns.push(OwnedFd::from(f));
    }
    let procs: Vec<CString> = t
        .cgroup_dirs
        .iter()
        .map(|d| cstr(d.join("cgroup.procs").as_os_str().as_bytes()))
        .collect::<Result<_, _>>()?;
    let filters: Filters = seccomp::build(&t.seccomp_deny)?;
    // argv/envp as NULL-terminated pointer arrays, built before the fork (the pointers stay
    // valid in the child's copy of our memory).
    let argv_c = CStringArray::new(argv.iter().map(cstr).collect::<Result<_, _>>()?);
    let env_c: Vec<CString> = t
        .env
        .iter()
        .map(|(k, v)| cstr(format!("{k}={v}")))
        .collect::<Result<_, _>>()?;
    let env_c = CStringArray::new(env_c);
    let arg0 = argv.first().ok_or(SpawnError::EmptyCommand)?;
    let path = t
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str());
    let candidates: Vec<CString> = exec_candidates(arg0, path, &t.workdir)
        .into_iter()
        .map(cstr)
        .collect::<Result<_, _>>()?;
    let workdir = cstr(&t.workdir)?;
    let last_cap = last_cap();
    let (rep_r, rep_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SpawnError::Io {
            what: "pipe".into(),
            source: e.into(),
        })?;
    let fds = ChildFds {
        stdin: stdio.stdin.as_raw_fd(),
        stdout: stdio.stdout.as_raw_fd(),
        stderr: stdio.stderr.as_raw_fd(),
        go: -1,
        report: rep_w.as_raw_fd(),
    };
    let (uid, gid) = (t.uid, t.gid);

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
        // SAFETY: raw syscalls in the forked (single-threaded) helper, with pointers into our
        // copy of memory prepared before the fork: NUL-terminated CStrings, NULL-terminated
        // argv/envp arrays of them, descriptors opened before the fork, stack values; every
        // path ends in execve or _exit.
        unsafe {
            child::check(&fds, child::STEP_SETSID, libc::setsid());
            for (from, to) in [(fds.stdin, 0), (fds.stdout, 1), (fds.stderr, 2)] {
                if from != to {
                    child::check(&fds, child::STEP_STDIO, libc::dup2(from, to));
                }
            }
            child::check(
                &fds,
                child::STEP_STDIO,
                libc::syscall(
                    libc::SYS_close_range,
                    3u32,
                    u32::MAX,
                    libc::CLOSE_RANGE_CLOEXEC,
                ) as libc::c_int,
            );
            for p in &procs {
                let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    child::fail(&fds, STEP_CGROUP, child::errno());
                }
                libc::close(fd);
            }
            child::check(
                &fds,
                child::STEP_SETGROUPS,
                libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>())
                    as libc::c_int,
            );
            for fd in &ns {
                child::check(&fds, STEP_SETNS, libc::setns(fd.as_raw_fd(), 0));
            }
            let inner = libc::fork();
            if inner < 0 {
                child::fail(&fds, STEP_FORK, child::errno());
            }
            if inner > 0 {
                // The helper: keep nothing of the caller's (a pipe end held here would keep
                // the command's stdin open), wait, pass the status on.
                libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
                let mut status = 0;
                while libc::waitpid(inner, &mut status, 0) < 0 && child::errno() == libc::EINTR {}
                let code = if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    128 + libc::WTERMSIG(status)
                };
                libc::_exit(code);
            }
            child::check(&fds, child::STEP_CAPS, child::drop_bounding(last_cap));
            child::check(
                &fds,
                child::STEP_SETID,
                libc::syscall(libc::SYS_setresgid, gid, gid, gid) as libc::c_int,
            );
            child::check(
                &fds,
                child::STEP_SETID,
                libc::syscall(libc::SYS_setresuid, uid, uid, uid) as libc::c_int,
            );
            child::check(&fds, child::STEP_CAPS, child::clear_caps());
            if !child::verify_no_caps(last_cap) {
                child::fail(&fds, child::STEP_VERIFY, libc::EPERM);
            }
            child::check(
                &fds,
                child::STEP_PDEATHSIG,
                libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ),
            );
            child::check(&fds, child::STEP_WORKDIR, libc::chdir(workdir.as_ptr()));
            child::check(
                &fds,
                child::STEP_NNP,
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
            );
            if let Err(e) = seccomp::install(&filters) {
                child::fail(&fds, child::STEP_SECCOMP, e);
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            let mut err = libc::ENOENT;
            for c in &candidates {
                libc::execve(c.as_ptr(), argv_c.as_ptr(), env_c.as_ptr());
                let e = child::errno();
                if e != libc::ENOENT && e != libc::ENOTDIR {
                    err = e;
                }
            }
            child::fail(&fds, child::STEP_EXEC, err);
        }
    }
    drop((rep_w, stdio));
    let mut rep = File::from(rep_r);
    let mut buf = [0u8; 12];
    let n = std::io::Read::read(&mut rep, &mut buf).map_err(|e| SpawnError::Io {
        what: "exec report".into(),
        source: e,
    })?;
    if n == 12 {
        let w = |i: usize| u32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
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
    Ok(Pid::from_raw(pid))
}
