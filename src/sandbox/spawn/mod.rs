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

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

use nix::unistd::Pid;

use super::cgroups::{self, CgroupError, SandboxCgroup};
use super::child::{self, ChildFds, Prepared};
use super::seccomp::SeccompError;
use super::spec::SandboxSpec;
use crate::home::HomeError;

mod plan;
mod prepare;
mod running;

pub(crate) use prepare::{cstr, last_cap};
pub use prepare::{exec_candidates, prepare, MAX_EXEC_STRINGS};
pub use running::{Exit, Sandbox};

/// Why a sandbox did not start (or could not be waited for). A variant with a source does not
/// repeat it: print the error with its chain.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("a path or value contains a NUL byte: {value}")]
    Nul {
        value: String,
        #[source]
        source: std::ffi::NulError,
    },
    /// The state directory cannot be created.
    #[error("state directory")]
    StateDir(#[source] HomeError),
    #[error("sandbox setup failed at step `{step}`")]
    Setup {
        step: String,
        #[source]
        err: nix::errno::Errno,
    },
    #[error("network setup for the sandbox failed")]
    Network(#[source] HookError),
    #[error("the sandbox process exited during setup")]
    Vanished,
    #[error("the command has more than {0} arguments or environment variables")]
    TooManyArgs(usize),
    #[error("the command is empty")]
    EmptyCommand,
}

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

/// Creates the host-side directories the spec needs: the root mount point, and the state dir
/// owned by the agent's mapped uid.
pub fn prepare_host(spec: &SandboxSpec) -> Result<(), SpawnError> {
    std::fs::create_dir_all(&spec.root_dir)
        .map_err(io_err(format!("cannot create {}", spec.root_dir.display())))?;
    let state = &spec.state_dir;
    crate::home::create_dir_private(state).map_err(SpawnError::StateDir)?;
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

pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), SpawnError> {
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
        Some(create_cgroup(spec, &mut prepared)?)
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
    let pid = match clone_child(&prepared, fds) {
        Ok(pid) => pid,
        Err(e) => {
            if let Some(cg) = &cgroup {
                let _ = cg.remove();
            }
            return Err(e);
        }
    };
    let mut sandbox = Sandbox::new(pid, cgroup);
    drop((go_r, rep_w, stdio));
    let mut go = File::from(go_w);
    let mut rep = File::from(rep_r);
    // The network, while the child builds its file system.
    setup_network(pid, net)?;
    match read_report(&mut rep)? {
        Some(r) if r[0] == child::MSG_NEED_MAPS => {}
        Some(r) => return Err(failed_step(r, &prepared)),
        None => return Err(SpawnError::Vanished),
    }
    write_id_maps(pid, spec)?;
    go.write_all(b"g")
        .map_err(io_err("cannot release the sandbox"))?;
    // EOF: the agent's command was executed and the init closed its end.
    match read_report(&mut rep)? {
        None => Ok(sandbox),
        Some(r) => {
            let e = failed_step(r, &prepared);
            let _ = sandbox.wait();
            Err(e)
        }
    }
}

/// Creates the sandbox's cgroup and tells the child its `cgroup.procs` files.
fn create_cgroup(spec: &SandboxSpec, prepared: &mut Prepared) -> Result<SandboxCgroup, SpawnError> {
    let cg = SandboxCgroup::locate(&cgroups::host_layout()?, &spec.name)?;
    cg.create(&spec.cgroup)?;
    // After the create: it lists only the groups that exist.
    prepared.cgroup_procs = cg
        .procs_files()
        .iter()
        .map(|p| cstr(p.as_os_str().as_bytes()))
        .collect::<Result<_, _>>()?;
    Ok(cg)
}

/// Clones the child into new mount, pid, net, uts and ipc namespaces; the child runs
/// [`child::child_main`] and never returns here.
fn clone_child(prepared: &Prepared, fds: ChildFds) -> Result<Pid, SpawnError> {
    let flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC;
    // SAFETY: a fork-like clone (no new stack: the child runs on its copy of ours, no pointer
    // arguments). In the child only `child_main` runs, which makes raw syscalls on data
    // prepared before the clone and never returns; the parent only reads the result.
    let pid = child::syscall_ret(unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    });
    if pid == 0 {
        // SAFETY: we are the freshly cloned child (the contract of `child_main`); `prepared`
        // and `fds` are our copies, and the descriptors in `fds` are open in this process.
        unsafe { child::child_main(prepared, fds) }
    }
    if pid < 0 {
        return Err(SpawnError::Io {
            what: "cannot create the sandbox namespaces (clone)".into(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(Pid::from_raw(pid))
}

/// Runs the [`NetworkSetup`] hook on the sandbox's network namespace.
fn setup_network(pid: Pid, net: &mut dyn NetworkSetup) -> Result<(), SpawnError> {
    let ns = File::open(format!("/proc/{pid}/ns/net"))
        .map_err(io_err("cannot open the sandbox's network namespace"))?;
    net.setup(&NetnsHandle {
        pid: pid.as_raw(),
        netns: ns.as_fd(),
    })
    .map_err(SpawnError::Network)
}

/// `setgroups` denied, then the uid and gid maps of the child's user namespace.
fn write_id_maps(pid: Pid, spec: &SandboxSpec) -> Result<(), SpawnError> {
    let proc = format!("/proc/{pid}");
    std::fs::write(format!("{proc}/setgroups"), "deny")
        .map_err(io_err("cannot write the sandbox's setgroups"))?;
    std::fs::write(format!("{proc}/uid_map"), spec.uid_map.map_line())
        .map_err(io_err("cannot write the sandbox's uid_map"))?;
    std::fs::write(format!("{proc}/gid_map"), spec.gid_map.map_line())
        .map_err(io_err("cannot write the sandbox's gid_map"))
}

/// The error of a failure report `[msg, step, errno]`: the step's name and the errno.
fn failed_step(r: [u32; 3], prepared: &Prepared) -> SpawnError {
    let step = prepared
        .op_names
        .get(r[1] as usize)
        .cloned()
        .unwrap_or_else(|| child::step_name(r[1]).to_string());
    SpawnError::Setup {
        step,
        err: nix::errno::Errno::from_raw(r[2] as i32),
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
mod tests;
