//! Starting a sandbox from a [`SandboxSpec`]: the parent's side of the setup.
//!
//! [`spawn`] prepares everything (C strings, file contents, seccomp programs), creates the
//! cgroup, clones the child into new mount, pid, net, uts and ipc namespaces, and then works
//! alongside it with a single handshake over pipes:
//!
//! - the child writes itself into the cgroup, builds its file system and creates its user
//!   namespace, while the parent runs the [`NetworkSetup`] hook on the sandbox's network
//!   namespace (the two overlap);
//! - the child reports NEED_MAPS; the parent, its network work done, writes the uid/gid maps
//!   and says "go": nothing of the agent runs before the network fence is in place;
//! - the child drops privileges, installs seccomp, starts the agent (which execs the command)
//!   and becomes the sandbox's init; the close-on-exec report pipe reads EOF once the command
//!   runs.
//!
//! Any failure kills the child, removes the cgroup and names the step that failed.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::cgroups::{self, CgroupError, SandboxCgroup};
use super::child::{self, ChildFds, Op, Prepared};
use super::seccomp::{self, SeccompError};
use super::spec::{MountKind, SandboxSpec};

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("a path or value contains a NUL byte: {0}")]
    Nul(String),
    #[error("sandbox setup failed at step `{step}`: {err}")]
    Setup {
        step: String,
        err: nix::errno::Errno,
    },
    #[error("network setup for the sandbox failed")]
    Network(#[source] HookError),
    #[error("the sandbox process exited during setup")]
    Vanished,
    #[error("the command has more than {0} arguments or environment variables")]
    TooManyArgs(usize),
}

/// The most arguments, and the most environment variables, a sandboxed command may get.
pub const MAX_EXEC_STRINGS: usize = 4096;

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> SpawnError {
    let what = what.into();
    move |source| SpawnError::Io { what, source }
}

/// What a [`NetworkSetup`] hook gets: the sandbox's init (host pid) and its network namespace.
#[derive(Debug)]
pub struct NetnsHandle<'a> {
    /// The sandbox init's pid in the host's pid namespace.
    pub pid: i32,
    /// An open `/proc/<pid>/ns/net` (usable with `setns(fd, CLONE_NEWNET)`).
    pub netns: BorrowedFd<'a>,
}

/// The error a [`NetworkSetup`] hook returns: the implementor's own typed error, boxed so the
/// sandbox runtime needs to know nothing of it (its chain is kept for printing and matching).
pub type HookError = Box<dyn std::error::Error + Send + Sync>;

/// The network engineer's hook: runs in the parent after the sandbox's network namespace
/// exists (with `lo` up) and before anything in the sandbox runs. An error aborts the start.
pub trait NetworkSetup {
    fn setup(&mut self, ns: &NetnsHandle<'_>) -> Result<(), HookError>;

    /// Environment the agent needs to use this network (proxy variables).
    fn agent_env(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Applies a changed blueprint's network (and inference) policy to the running sandbox.
    fn reload(
        &mut self,
        _bp: &crate::blueprint::Blueprint,
        _bp_path: &std::path::Path,
    ) -> Result<(), HookError> {
        Ok(())
    }

    /// Releases what the last `setup` attached (the agent stopped for good).
    fn detach(&mut self) {}

    /// When the gateway last answered an inference request, if it serves inference.
    fn last_inference(&self) -> Option<std::time::SystemTime> {
        None
    }
}

/// The default: the sandbox keeps only `lo`.
#[derive(Debug, Default, Clone, Copy)]
pub struct LoopbackOnly;

impl NetworkSetup for LoopbackOnly {
    fn setup(&mut self, _ns: &NetnsHandle<'_>) -> Result<(), HookError> {
        Ok(())
    }
}

/// Which protections to apply. Everything is on by default; the `bench-*` switches exist only
/// so the benchmark can measure bubblewrap-equivalent isolation.
#[derive(Debug, Clone, Copy)]
pub struct SpawnOptions {
    pub cgroups: bool,
    pub seccomp: bool,
}

impl Default for SpawnOptions {
    fn default() -> Self {
        SpawnOptions {
            cgroups: true,
            seccomp: true,
        }
    }
}

/// The sandbox's stdio, as seen by its processes.
#[derive(Debug)]
pub struct Stdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// A running sandbox.
#[derive(Debug)]
pub struct Sandbox {
    /// The sandbox init's pid on the host.
    pub pid: Pid,
    pub cgroup: Option<SandboxCgroup>,
    reaped: bool,
}

/// How a sandbox ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The shell convention: the code, or 128 + the signal.
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

impl Sandbox {
    /// Sends a signal to the sandbox init (which forwards it to the agent).
    pub fn signal(&self, sig: Signal) -> nix::Result<()> {
        kill(self.pid, sig)
    }

    /// Waits for the init (and so every process of the sandbox) to exit.
    pub fn wait(&mut self) -> Result<Exit, SpawnError> {
        loop {
            match waitpid(self.pid, None) {
                Ok(WaitStatus::Exited(_, c)) => {
                    self.reaped = true;
                    return Ok(Exit::Code(c));
                }
                Ok(WaitStatus::Signaled(_, s, _)) => {
                    self.reaped = true;
                    return Ok(Exit::Signal(s as i32));
                }
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    return Err(SpawnError::Io {
                        what: "waiting for the sandbox".into(),
                        source: e.into(),
                    })
                }
            }
        }
    }

    /// Reaps the init if it has exited; `None` while it runs.
    pub fn try_wait(&mut self) -> Result<Option<Exit>, SpawnError> {
        if self.reaped {
            return Ok(None);
        }
        match waitpid(self.pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => {
                self.reaped = true;
                Ok(Some(Exit::Code(c)))
            }
            Ok(WaitStatus::Signaled(_, s, _)) => {
                self.reaped = true;
                Ok(Some(Exit::Signal(s as i32)))
            }
            Ok(_) => Ok(None),
            Err(nix::errno::Errno::ECHILD) => {
                self.reaped = true;
                Ok(Some(Exit::Signal(libc::SIGKILL)))
            }
            Err(e) => Err(SpawnError::Io {
                what: "waiting for the sandbox".into(),
                source: e.into(),
            }),
        }
    }

    /// Removes the cgroup (after [`Sandbox::wait`]). Returns whether the memory limit was hit.
    pub fn teardown(&mut self) -> Result<bool, SpawnError> {
        let mut oom = false;
        if let Some(cg) = self.cgroup.take() {
            oom = cg.oom_killed();
            cg.remove()?;
        }
        Ok(oom)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
        if let Some(cg) = self.cgroup.take() {
            let _ = cg.remove();
        }
    }
}

fn cstr(s: impl AsRef<[u8]>) -> Result<CString, SpawnError> {
    CString::new(s.as_ref())
        .map_err(|_| SpawnError::Nul(String::from_utf8_lossy(s.as_ref()).into_owned()))
}

fn host_path(root: &Path, inside: &str) -> Result<CString, SpawnError> {
    cstr(
        root.join(inside.trim_start_matches('/'))
            .as_os_str()
            .as_bytes(),
    )
}

/// Turns the spec into the child's operations. Pure apart from reading cap_last_cap.
pub fn prepare(spec: &SandboxSpec, opts: &SpawnOptions) -> Result<Prepared, SpawnError> {
    let root = spec.root_dir.as_path();
    let mut ops = Vec::new();
    let mut names = Vec::new();
    let mut push = |op: Op, name: String| {
        ops.push(op);
        names.push(name);
    };
    let rec_private = (libc::MS_REC | libc::MS_PRIVATE) as libc::c_ulong;
    push(
        Op::Mount {
            source: None,
            target: cstr("/")?,
            fstype: None,
            flags: rec_private,
            data: None,
        },
        "make / private".into(),
    );
    push(
        Op::Mount {
            source: Some(cstr("tmpfs")?),
            target: cstr(root.as_os_str().as_bytes())?,
            fstype: Some(cstr("tmpfs")?),
            flags: (libc::MS_NOSUID | libc::MS_NODEV) as libc::c_ulong,
            data: Some(cstr(format!(
                "size={},mode=0755,nr_inodes=4096",
                super::spec::ROOT_TMPFS_SIZE
            ))?),
        },
        format!("mount the root tmpfs on {}", root.display()),
    );
    let mut made: Vec<String> = Vec::new();
    let mut mkdirs = |inside: &str, push: &mut dyn FnMut(Op, String)| -> Result<(), SpawnError> {
        let mut cur = String::new();
        for comp in inside
            .trim_start_matches('/')
            .split('/')
            .filter(|c| !c.is_empty())
        {
            cur.push('/');
            cur.push_str(comp);
            if !made.contains(&cur) {
                made.push(cur.clone());
                push(
                    Op::Mkdir {
                        path: host_path(root, &cur)?,
                        mode: 0o755,
                    },
                    format!("create {cur}"),
                );
            }
        }
        Ok(())
    };
    for d in &spec.dirs {
        mkdirs(d, &mut push)?;
    }
    for (link, target) in &spec.symlinks {
        push(
            Op::Symlink {
                target: cstr(target)?,
                link: host_path(root, link)?,
            },
            format!("link {link} -> {target}"),
        );
    }
    for f in &spec.files {
        if let Some(parent) = Path::new(&f.path).parent().and_then(|p| p.to_str()) {
            mkdirs(parent, &mut push)?;
        }
        push(
            Op::WriteFile {
                path: host_path(root, &f.path)?,
                contents: f.contents.clone().into_bytes(),
                mode: f.mode,
            },
            format!("write {}", f.path),
        );
    }
    let (nosuid, nodev, noexec, rdonly) = (
        libc::MS_NOSUID as libc::c_ulong,
        libc::MS_NODEV as libc::c_ulong,
        libc::MS_NOEXEC as libc::c_ulong,
        libc::MS_RDONLY as libc::c_ulong,
    );
    for m in &spec.mounts {
        let target = host_path(root, &m.target)?;
        let is_file = matches!(m.kind, MountKind::Bind { file: true, .. });
        let parent = Path::new(&m.target)
            .parent()
            .and_then(|p| p.to_str())
            .unwrap_or("/");
        mkdirs(parent, &mut push)?;
        if is_file {
            push(
                Op::Touch {
                    path: target.clone(),
                },
                format!("create mount point {}", m.target),
            );
        } else {
            mkdirs(&m.target, &mut push)?;
        }
        let desc = |what: &str| format!("{what} {} ({})", m.target, m.origin);
        match &m.kind {
            MountKind::Bind {
                source,
                read_only,
                file,
            } => {
                push(
                    Op::Mount {
                        source: Some(cstr(source.as_os_str().as_bytes())?),
                        target: target.clone(),
                        fstype: None,
                        flags: libc::MS_BIND as libc::c_ulong,
                        data: None,
                    },
                    desc(&format!("bind {} at", source.display())),
                );
                // Device nodes keep `dev`; everything else is nodev. Nothing is suid.
                let device = *file && m.target.starts_with("/dev/");
                let mut flags =
                    libc::MS_BIND as libc::c_ulong | libc::MS_REMOUNT as libc::c_ulong | nosuid;
                if device {
                    flags |= noexec;
                } else {
                    flags |= nodev;
                }
                if *read_only {
                    flags |= rdonly;
                }
                push(
                    Op::Mount {
                        source: None,
                        target,
                        fstype: None,
                        flags,
                        data: None,
                    },
                    desc("restrict"),
                );
            }
            MountKind::Tmpfs { size, mode } => {
                push(
                    Op::Mount {
                        source: Some(cstr("tmpfs")?),
                        target,
                        fstype: Some(cstr("tmpfs")?),
                        flags: nosuid | nodev | if m.target == "/dev" { noexec } else { 0 },
                        data: Some(cstr(format!("size={size},mode={mode:o}"))?),
                    },
                    desc("mount tmpfs at"),
                );
                if m.target == "/dev" {
                    for (link, to) in [
                        ("fd", "/proc/self/fd"),
                        ("stdin", "/proc/self/fd/0"),
                        ("stdout", "/proc/self/fd/1"),
                        ("stderr", "/proc/self/fd/2"),
                        ("ptmx", "pts/ptmx"),
                    ] {
                        push(
                            Op::Symlink {
                                target: cstr(to)?,
                                link: host_path(root, &format!("/dev/{link}"))?,
                            },
                            format!("link /dev/{link}"),
                        );
                    }
                }
            }
            MountKind::Proc => push(
                Op::Mount {
                    source: Some(cstr("proc")?),
                    target,
                    fstype: Some(cstr("proc")?),
                    flags: nosuid | nodev | noexec,
                    data: None,
                },
                desc("mount proc at"),
            ),
            MountKind::Devpts => push(
                Op::Mount {
                    source: Some(cstr("devpts")?),
                    target,
                    fstype: Some(cstr("devpts")?),
                    flags: nosuid | noexec,
                    data: Some(cstr("newinstance,ptmxmode=0666,mode=0620")?),
                },
                desc("mount devpts at"),
            ),
        }
    }
    push(
        Op::PivotRoot {
            root: cstr(root.as_os_str().as_bytes())?,
        },
        "pivot_root into the sandbox root".into(),
    );
    push(
        Op::Mount {
            source: None,
            target: cstr("/")?,
            fstype: None,
            flags: libc::MS_REMOUNT as libc::c_ulong | rdonly | nosuid | nodev,
            data: None,
        },
        "make the root read-only".into(),
    );

    let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40u32)
        .min(63);
    let agent_argv = spec.argv.iter().map(cstr).collect::<Result<Vec<_>, _>>()?;
    if agent_argv.len() > MAX_EXEC_STRINGS || spec.env.len() > MAX_EXEC_STRINGS {
        return Err(SpawnError::TooManyArgs(MAX_EXEC_STRINGS));
    }
    let agent_candidates = exec_candidates(
        &spec.argv[0],
        spec.env.get("PATH").map(String::as_str),
        &spec.workdir,
    )
    .into_iter()
    .map(cstr)
    .collect::<Result<Vec<_>, _>>()?;
    let envp = spec
        .env
        .iter()
        .map(|(k, v)| cstr(format!("{k}={v}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Prepared {
        ops,
        op_names: names,
        hostname: cstr(&spec.hostname)?,
        nofile: spec.rlimits.nofile,
        uid: spec.uid,
        gid: spec.gid,
        last_cap,
        workdir: cstr(&spec.workdir)?,
        seccomp: if opts.seccomp {
            Some(seccomp::build(&spec.seccomp_deny)?)
        } else {
            None
        },
        agent_argv: child::CStringArray::new(agent_argv),
        agent_candidates,
        envp: child::CStringArray::new(envp),
        cgroupns: opts.cgroups,
        cgroup_procs: Vec::new(),
    })
}

/// The paths execve tries for `arg0`, in order (execvp's PATH search, done before the fork).
pub fn exec_candidates(arg0: &str, path: Option<&str>, workdir: &str) -> Vec<String> {
    if arg0.contains('/') {
        if arg0.starts_with('/') {
            vec![arg0.to_string()]
        } else {
            vec![format!("{}/{arg0}", workdir.trim_end_matches('/'))]
        }
    } else {
        path.unwrap_or(super::spec::SANDBOX_PATH)
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| format!("{}/{arg0}", d.trim_end_matches('/')))
            .collect()
    }
}

/// Creates the host-side directories the spec needs: the root mount point, and the state dir
/// owned by the agent's mapped uid.
pub fn prepare_host(spec: &SandboxSpec) -> Result<(), SpawnError> {
    std::fs::create_dir_all(&spec.root_dir)
        .map_err(io_err(format!("cannot create {}", spec.root_dir.display())))?;
    let state = &spec.state_dir;
    crate::home::create_dir_private(state).map_err(|e| SpawnError::Io {
        what: "state directory".into(),
        source: io::Error::other(e.to_string()),
    })?;
    let meta =
        std::fs::metadata(state).map_err(io_err(format!("state directory {}", state.display())))?;
    if meta.uid() != spec.host_uid() || meta.gid() != spec.host_gid() {
        nix::unistd::chown(
            state,
            Some(nix::unistd::Uid::from_raw(spec.host_uid())),
            Some(nix::unistd::Gid::from_raw(spec.host_gid())),
        )
        .map_err(|e| SpawnError::Io {
            what: format!(
                "state directory {}: cannot give it to the sandbox's uid {}",
                state.display(),
                spec.host_uid()
            ),
            source: e.into(),
        })?;
    }
    Ok(())
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SpawnError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SpawnError::Io {
        what: "pipe".into(),
        source: e.into(),
    })
}

/// Reads one 12-byte report; `None` on EOF.
fn read_report(r: &mut File) -> Result<Option<[u32; 3]>, SpawnError> {
    let mut buf = [0u8; 12];
    let mut got = 0;
    while got < 12 {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(SpawnError::Vanished),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err("reading the sandbox's setup report")(e)),
        }
    }
    let w = |i: usize| u32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    Ok(Some([w(0), w(4), w(8)]))
}

/// Starts a sandbox. The calling thread becomes the sandbox's parent: keep it alive for the
/// sandbox's lifetime (the sandbox gets SIGKILL when that thread exits).
pub fn spawn(
    spec: &SandboxSpec,
    opts: &SpawnOptions,
    stdio: Stdio,
    net: &mut dyn NetworkSetup,
) -> Result<Sandbox, SpawnError> {
    let mut prepared = prepare(spec, opts)?;
    prepare_host(spec)?;
    let cgroup = if opts.cgroups {
        let cg = SandboxCgroup::locate(&cgroups::host_layout()?, &spec.name)?;
        prepared.cgroup_procs = cg
            .procs_files()
            .iter()
            .map(|p| cstr(p.as_os_str().as_bytes()))
            .collect::<Result<_, _>>()?;
        cg.create(&spec.cgroup)?;
        Some(cg)
    } else {
        None
    };
    let (go_r, go_w) = pipe()?;
    let (rep_r, rep_w) = pipe()?;
    let fds = ChildFds {
        stdin: stdio.stdin.as_raw_fd(),
        stdout: stdio.stdout.as_raw_fd(),
        stderr: stdio.stderr.as_raw_fd(),
        go: go_r.as_raw_fd(),
        report: rep_w.as_raw_fd(),
    };
    let flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC;
    // SAFETY: a fork-like clone (no new stack: the child runs on its copy of ours). The child
    // only runs `child_main`, which makes raw syscalls on data prepared above and never returns.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid == 0 {
        // SAFETY: we are the freshly cloned child; `prepared` and `fds` are our copies.
        unsafe { child::child_main(&prepared, fds) }
    }
    if pid < 0 {
        let e = io::Error::last_os_error();
        if let Some(cg) = &cgroup {
            let _ = cg.remove();
        }
        return Err(SpawnError::Io {
            what: "cannot create the sandbox namespaces (clone)".into(),
            source: e,
        });
    }
    let mut sandbox = Sandbox {
        pid: Pid::from_raw(pid as i32),
        cgroup,
        reaped: false,
    };
    drop((go_r, rep_w, stdio));
    let mut go = File::from(go_w);
    let mut rep = File::from(rep_r);
    let fail_from = |r: [u32; 3], prepared: &Prepared| -> SpawnError {
        let step = prepared
            .op_names
            .get(r[1] as usize)
            .cloned()
            .unwrap_or_else(|| child::step_name(r[1]).to_string());
        SpawnError::Setup {
            step,
            err: nix::errno::Errno::from_raw(r[2] as i32),
        }
    };

    // The network, while the child builds its file system.
    {
        let ns = File::open(format!("/proc/{pid}/ns/net"))
            .map_err(io_err("cannot open the sandbox's network namespace"))?;
        net.setup(&NetnsHandle {
            pid: pid as i32,
            netns: ns.as_fd(),
        })
        .map_err(SpawnError::Network)?;
    }

    // The id maps.
    match read_report(&mut rep)? {
        Some(r) if r[0] == child::MSG_NEED_MAPS => {}
        Some(r) => return Err(fail_from(r, &prepared)),
        None => return Err(SpawnError::Vanished),
    }
    let proc = format!("/proc/{pid}");
    std::fs::write(format!("{proc}/setgroups"), "deny")
        .map_err(io_err("cannot write the sandbox's setgroups"))?;
    std::fs::write(format!("{proc}/uid_map"), spec.uid_map.map_line())
        .map_err(io_err("cannot write the sandbox's uid_map"))?;
    std::fs::write(format!("{proc}/gid_map"), spec.gid_map.map_line())
        .map_err(io_err("cannot write the sandbox's gid_map"))?;
    go.write_all(b"g")
        .map_err(io_err("cannot release the sandbox"))?;

    // EOF: the agent's command was executed and the init closed its end.
    match read_report(&mut rep)? {
        None => Ok(sandbox),
        Some(r) => {
            let e = fail_from(r, &prepared);
            let _ = sandbox.wait();
            Err(e)
        }
    }
}

/// Makes a pipe whose write end goes to the sandbox; returns `(ours_read, theirs_write)`.
pub fn output_pipe() -> Result<(OwnedFd, OwnedFd), SpawnError> {
    pipe()
}

/// Opens the host's /dev/null for a sandbox's stdin.
pub fn dev_null() -> Result<OwnedFd, SpawnError> {
    let f = File::open("/dev/null").map_err(io_err("/dev/null"))?;
    Ok(OwnedFd::from(f))
}

/// Wraps a raw fd (e.g. 0, 1, 2 duplicated) as owned.
///
/// # Safety
/// `fd` must be open and owned by nobody else.
pub unsafe fn owned(fd: i32) -> OwnedFd {
    // SAFETY: guaranteed by the caller.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[cfg(test)]
#[path = "spawn_tests.rs"]
mod tests;
