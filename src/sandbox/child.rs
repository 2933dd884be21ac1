//! The sandbox's first process, from clone() until it becomes the sandbox's init (pid 1).
//!
//! Everything this code touches is prepared by the parent beforehand ([`Prepared`]: C strings,
//! file contents, the seccomp programs), so the child makes raw syscalls only: no allocation,
//! no locks, nothing that is unsafe after fork in a multithreaded parent (the supervisor).
//!
//! Order (youki / bubblewrap / Firecracker): join the sandbox's cgroup (writing itself into
//! its `cgroup.procs`, so no round trip to the parent) -> `lo` up -> cgroup namespace -> mounts,
//! pivot_root, read-only root -> hostname -> rlimits -> user namespace, then the one wait for
//! the parent (it writes the id maps and has finished the network setup it ran meanwhile) ->
//! drop every capability, switch to the agent's uid/gid, verify (fail closed) -> no_new_privs ->
//! seccomp, last -> start the agent (which execs the command) -> become the init
//! ([`super::init`]).
//!
//! The mount, pid, net, uts and ipc namespaces come from clone() and belong to the host's
//! user namespace: the mounts are made as real root (which can read the 0700 home), and the
//! user namespace created afterwards only holds the unprivileged agent. Nothing inside ever
//! has a capability over those namespaces.

use std::ffi::CString;
use std::os::fd::RawFd;

use super::seccomp::{self, Filters};

/// A message from the child to the parent on the report pipe: `[kind, step, errno]` as u32s.
pub const MSG_NEED_MAPS: u32 = 2;
pub const MSG_ERROR: u32 = 3;

/// Fixed steps (op steps are the op's index).
pub const STEP_SETSID: u32 = 10_000;
pub const STEP_STDIO: u32 = 10_001;
pub const STEP_LOOPBACK: u32 = 10_002;
pub const STEP_WAIT: u32 = 10_003;
pub const STEP_CGROUPNS: u32 = 10_004;
pub const STEP_HOSTNAME: u32 = 10_005;
pub const STEP_RLIMIT: u32 = 10_006;
pub const STEP_SETGROUPS: u32 = 10_007;
pub const STEP_USERNS: u32 = 10_008;
pub const STEP_CAPS: u32 = 10_009;
pub const STEP_SETID: u32 = 10_010;
pub const STEP_VERIFY: u32 = 10_011;
pub const STEP_WORKDIR: u32 = 10_012;
pub const STEP_NNP: u32 = 10_013;
pub const STEP_SECCOMP: u32 = 10_014;
pub const STEP_EXEC: u32 = 10_015;
pub const STEP_PDEATHSIG: u32 = 10_016;
pub const STEP_FORK: u32 = 10_017;
pub const STEP_CGROUP: u32 = 10_018;

/// Describes a fixed step for error messages.
pub fn step_name(step: u32) -> &'static str {
    match step {
        STEP_SETSID => "setsid",
        STEP_STDIO => "set up stdin/stdout/stderr",
        STEP_LOOPBACK => "bring up the loopback interface",
        STEP_WAIT => "wait for the supervisor",
        STEP_CGROUPNS => "create the cgroup namespace",
        STEP_HOSTNAME => "set the hostname",
        STEP_RLIMIT => "set rlimits (sandbox.nofile)",
        STEP_SETGROUPS => "clear supplementary groups",
        STEP_USERNS => "create the user namespace",
        STEP_CAPS => "drop capabilities",
        STEP_SETID => "switch to the agent's uid/gid (sandbox.uid, sandbox.gid)",
        STEP_VERIFY => "verify that no capability is left",
        STEP_WORKDIR => "enter the working directory (agent.workdir)",
        STEP_NNP => "set no_new_privs",
        STEP_SECCOMP => "install the seccomp filter",
        STEP_EXEC => "execute the command",
        STEP_PDEATHSIG => "set the parent-death signal",
        STEP_FORK => "start the agent process",
        STEP_CGROUP => "join the sandbox's cgroup (resources)",
        _ => "sandbox setup",
    }
}

/// One file-system operation, relative to nothing: every path is absolute on the host before
/// pivot_root (under the new root's mount point).
#[derive(Debug)]
pub enum Op {
    Mount {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
    },
    Mkdir {
        path: CString,
        mode: libc::mode_t,
    },
    Touch {
        path: CString,
    },
    WriteFile {
        path: CString,
        contents: Vec<u8>,
        mode: libc::mode_t,
    },
    Symlink {
        target: CString,
        link: CString,
    },
    /// chdir(root); pivot_root(".", "."); umount2(".", MNT_DETACH); chdir("/").
    PivotRoot {
        root: CString,
    },
}

/// C strings and the NULL-terminated pointer array execve takes, built by the parent: the
/// child then needs no array of its own (64 KiB of stack it would have to touch).
#[derive(Debug)]
pub struct CStringArray {
    strings: Vec<CString>,
    /// Pointers into `strings`' heap buffers (which never move), then NULL.
    ptrs: Vec<*const libc::c_char>,
}

impl CStringArray {
    pub fn new(strings: Vec<CString>) -> CStringArray {
        let ptrs = strings
            .iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        CStringArray { strings, ptrs }
    }

    pub fn strings(&self) -> &[CString] {
        &self.strings
    }

    /// The NULL-terminated array, valid as long as `self`.
    pub fn as_ptr(&self) -> *const *const libc::c_char {
        self.ptrs.as_ptr()
    }
}

/// Everything the child needs, prepared by the parent.
#[derive(Debug)]
pub struct Prepared {
    pub ops: Vec<Op>,
    /// A description of each op, for errors.
    pub op_names: Vec<String>,
    pub hostname: CString,
    pub nofile: u64,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub last_cap: u32,
    pub workdir: CString,
    pub seccomp: Option<Filters>,
    /// The agent's argv, and the paths execve tries for `argv[0]` (PATH resolved beforehand).
    pub agent_argv: CStringArray,
    pub agent_candidates: Vec<CString>,
    pub envp: CStringArray,
    /// Whether to create a cgroup namespace (after joining the cgroup).
    pub cgroupns: bool,
    /// The `cgroup.procs` files of the sandbox's cgroup (one per hierarchy) the child writes
    /// itself into first.
    pub cgroup_procs: Vec<CString>,
}

/// The child's file descriptors.
#[derive(Debug, Clone, Copy)]
pub struct ChildFds {
    pub stdin: RawFd,
    pub stdout: RawFd,
    pub stderr: RawFd,
    /// Read end of the parent's "go" pipe.
    pub go: RawFd,
    /// Write end of the report pipe (close-on-exec: EOF tells the parent the exec worked).
    pub report: RawFd,
}

/// The `int` a raw syscall returned, out of the `long` that `libc::syscall` widens it to. The
/// calls made here (capset, setresuid, setgroups, close_range, clone...) return an `int` by the
/// kernel's contract, so the value always fits; were it ever not to, it saturates, keeping its
/// sign (an error stays negative). Pure arithmetic: no allocation, no panic.
pub(super) fn syscall_ret(r: libc::c_long) -> libc::c_int {
    libc::c_int::try_from(r).unwrap_or(if r < 0 {
        libc::c_int::MIN
    } else {
        libc::c_int::MAX
    })
}

pub(super) fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot, always valid.
    unsafe { *libc::__errno_location() }
}

pub(super) fn report(fd: RawFd, kind: u32, step: u32, err: i32) {
    let msg: [u32; 3] = [kind, step, err as u32];
    // SAFETY: writes 12 bytes from a live stack array.
    unsafe { libc::write(fd, msg.as_ptr().cast(), 12) };
}

pub(super) fn fail(fds: &ChildFds, step: u32, err: i32) -> ! {
    report(fds.report, MSG_ERROR, step, err);
    // SAFETY: leaves the child at once, without running the parent's atexit handlers.
    unsafe { libc::_exit(127) }
}

/// Waits for one "go" byte; a closed pipe (the parent died) ends the child.
fn wait_go(fds: &ChildFds) {
    let mut b = [0u8; 1];
    loop {
        // SAFETY: reads one byte into a live stack buffer.
        let n = unsafe { libc::read(fds.go, b.as_mut_ptr().cast(), 1) };
        if n == 1 {
            return;
        }
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        fail(fds, STEP_WAIT, if n == 0 { libc::EPIPE } else { errno() });
    }
}

pub(super) fn check(fds: &ChildFds, step: u32, r: libc::c_int) {
    if r < 0 {
        fail(fds, step, errno());
    }
}

fn cptr(c: &Option<CString>) -> *const libc::c_char {
    c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())
}

fn run_op(op: &Op) -> libc::c_int {
    match op {
        Op::Mount {
            source,
            target,
            fstype,
            flags,
            data,
        } => {
            // SAFETY: NUL-terminated CStrings owned by `op` (null only for mount's optional
            // source, type and data, which the syscall accepts), alive for the call.
            unsafe {
                libc::mount(
                    cptr(source),
                    target.as_ptr(),
                    cptr(fstype),
                    *flags,
                    cptr(data).cast(),
                )
            }
        }
        Op::Mkdir { path, mode } => {
            // SAFETY: a NUL-terminated CString owned by `op`, alive for the call.
            let r = unsafe { libc::mkdir(path.as_ptr(), *mode) };
            if r < 0 && errno() == libc::EEXIST {
                0
            } else {
                r
            }
        }
        Op::Touch { path } => touch(path),
        Op::WriteFile {
            path,
            contents,
            mode,
        } => write_file(path, contents, *mode),
        // SAFETY: NUL-terminated CStrings owned by `op`, alive for the call.
        Op::Symlink { target, link } => unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) },
        Op::PivotRoot { root } => pivot_root(root),
    }
}

/// Creates `path` (empty, mode 0644) if it does not exist: a file mount point.
fn touch(path: &CString) -> libc::c_int {
    // SAFETY: `path` is a live NUL-terminated CString; the descriptor closed is the one opened.
    unsafe {
        let fd = libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
            0o644,
        );
        if fd < 0 {
            return -1;
        }
        libc::close(fd)
    }
}

/// Writes `contents` to `path` (created or truncated), which then has `mode` whatever the umask.
fn write_file(path: &CString, contents: &[u8], mode: libc::mode_t) -> libc::c_int {
    // SAFETY: `path` is a live NUL-terminated CString; each write passes a pointer into
    // `contents` with the length of what is left of it; the descriptor closed is the one
    // opened here.
    unsafe {
        let fd = libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            mode,
        );
        if fd < 0 {
            return -1;
        }
        let mut off = 0;
        while off < contents.len() {
            let n = libc::write(fd, contents[off..].as_ptr().cast(), contents.len() - off);
            if n <= 0 {
                libc::close(fd);
                return -1;
            }
            off += n as usize;
        }
        libc::fchmod(fd, mode);
        libc::close(fd)
    }
}

/// chdir(root); pivot_root(".", "."); umount2(".", MNT_DETACH); chdir("/").
fn pivot_root(root: &CString) -> libc::c_int {
    // SAFETY: `root` is a live NUL-terminated CString, `c"."` and `c"/"` are static ones.
    unsafe {
        if libc::chdir(root.as_ptr()) < 0 {
            return -1;
        }
        let dot = c".".as_ptr();
        if libc::syscall(libc::SYS_pivot_root, dot, dot) < 0 {
            return -1;
        }
        if libc::umount2(dot, libc::MNT_DETACH) < 0 {
            return -1;
        }
        libc::chdir(c"/".as_ptr())
    }
}

/// Moves the calling process into the cgroup whose `cgroup.procs` is `procs` ("0" is "me").
fn join_cgroup(procs: &CString) -> libc::c_int {
    // SAFETY: open of a live NUL-terminated path, a 1-byte write from a static, close.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return -1;
        }
        let n = libc::write(fd, b"0".as_ptr().cast(), 1);
        let e = errno();
        libc::close(fd);
        if n != 1 {
            *libc::__errno_location() = e;
            return -1;
        }
        0
    }
}

/// `IFF_UP` as the `short` that `ifreq`'s flags field holds (libc declares the flag an `int`).
#[allow(
    clippy::cast_possible_truncation,
    reason = "IFF_UP is 0x1; the assertion below proves at compile time that it fits a short"
)]
const IFF_UP_SHORT: libc::c_short = {
    assert!(libc::IFF_UP >= 0 && libc::IFF_UP <= libc::c_short::MAX as libc::c_int);
    libc::IFF_UP as libc::c_short
};

/// Brings `lo` up in the current network namespace.
fn loopback_up() -> libc::c_int {
    // SAFETY: a datagram socket and two ioctls on a zeroed, stack-allocated ifreq whose name is
    // "lo" (NUL-terminated, within IFNAMSIZ).
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return -1;
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        ifr.ifr_name[0] = b'l' as libc::c_char;
        ifr.ifr_name[1] = b'o' as libc::c_char;
        let mut r = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr);
        if r == 0 {
            ifr.ifr_ifru.ifru_flags |= IFF_UP_SHORT;
            r = libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr);
        }
        libc::close(fd);
        r
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522;

/// Clears the bounding and ambient sets (needs CAP_SETPCAP, so before the uid switch).
pub(super) fn drop_bounding(last_cap: u32) -> libc::c_int {
    for cap in 0..=last_cap {
        // SAFETY: prctl with integer arguments.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if r < 0 && errno() != libc::EINVAL {
            return -1;
        }
    }
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    }
}

/// Clears the effective, permitted and inheritable sets.
pub(super) fn clear_caps() -> libc::c_int {
    let hdr = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: capset reads a v3 header and two data structs from live stack values.
    unsafe {
        syscall_ret(libc::syscall(
            libc::SYS_capset,
            &hdr as *const CapHeader,
            data.as_ptr(),
        ))
    }
}

/// True when no capability is left in any set and uid 0 cannot be regained.
pub(super) fn verify_no_caps(last_cap: u32) -> bool {
    let mut hdr = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes two data structs into a live stack array.
    let r = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut hdr as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    if r != 0
        || data
            .iter()
            .any(|d| d.effective != 0 || d.permitted != 0 || d.inheritable != 0)
    {
        return false;
    }
    // The ambient set needs no check of its own: the kernel keeps it a subset of permitted and
    // inheritable, both verified empty above.
    for cap in 0..=last_cap {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) } == 1 {
            return false;
        }
    }
    // SAFETY: the callers (the cloned child, the exec helper) are single-threaded, as
    // `raw_setresuid` requires; the call is expected to fail here (no capability is left).
    unsafe { raw_setresuid(0) != 0 }
}

/// setresuid(id, id, id) as the raw syscall. glibc's wrappers for the set*id calls broadcast the
/// change to every thread the parent had (`__nptl_setxid`) and wait for them: in a child cloned
/// from a multithreaded supervisor those threads do not exist, and the wait never ends.
///
/// # Safety
/// The calling process must be single-threaded (the cloned child, the exec helper): in a
/// multithreaded one only the calling thread would change ids, and glibc's view of them would
/// be wrong for the others.
unsafe fn raw_setresuid(id: libc::uid_t) -> libc::c_int {
    // SAFETY: a syscall on integers only (no memory is passed); the caller guarantees that
    // no other thread exists whose ids would diverge.
    syscall_ret(unsafe { libc::syscall(libc::SYS_setresuid, id, id, id) })
}

/// The agent's stack until it execs: its exec path and error report only.
const AGENT_STACK: usize = 32 * 1024;

#[repr(C, align(16))]
struct AgentStack([u8; AGENT_STACK]);

/// What the agent's first moments need, prepared by pid 1 before the clone.
struct AgentExec<'a> {
    candidates: &'a [CString],
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    report: RawFd,
}

/// The agent between clone and exec.
extern "C" fn agent_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `AgentExec` that `child_main` passed to clone, alive in pid 1's
    // frame (CLONE_VM shares it, CLONE_VFORK suspends pid 1 until we exec or exit); its
    // candidates are NUL-terminated CStrings and argv/envp NULL-terminated arrays of them
    // (`CStringArray`); the sigset is a zeroed stack value; every path ends in execve or _exit.
    unsafe {
        let a = &*(arg as *const AgentExec);
        libc::setpgid(0, 0);
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        let mut err = libc::ENOENT;
        for c in a.candidates {
            libc::execve(c.as_ptr(), a.argv, a.envp);
            let e = errno();
            if e != libc::ENOENT && e != libc::ENOTDIR {
                err = e;
            }
        }
        report(a.report, MSG_ERROR, STEP_EXEC, err);
        libc::_exit(if err == libc::ENOENT { 127 } else { 126 })
    }
}

/// The child's whole life. Never returns: it becomes the init, or exits 127 after reporting.
///
/// # Safety
/// Must run in a freshly cloned child (its own copy of the parent's memory, one thread) and
/// `p` and `fds` must come from the parent's [`Prepared`] state, with every descriptor in `fds`
/// open in the child. Only raw syscalls run (no allocation, no locks), so the parent may have
/// had other threads.
pub unsafe fn child_main(p: &Prepared, fds: ChildFds) -> ! {
    own_session_and_stdio(&fds);
    enter_cgroup_and_build_root(p, &fds);
    name_limits_and_user_namespace(p, &fds);
    report(fds.report, MSG_NEED_MAPS, 0, 0);
    wait_go(&fds);
    drop_privileges(p, &fds);
    lock_down(p, &fds);
    let agent = start_agent(p, &fds);
    // pid 1 carries on as the init (closing every descriptor above stderr, among them the
    // report pipe: its EOF tells the parent the setup is done once the agent has exec'd).
    // SAFETY: we are pid 1 of the sandbox (the first process of its pid namespace), with
    // privileges dropped above and the forwarded signals and SIGCHLD blocked (`pid1`'s
    // contract); `agent` is our child.
    unsafe { super::init::pid1(agent as libc::pid_t) }
}

/// Dies with the parent, leads a session of its own, gets the sandbox's stdio, and marks every
/// other inherited descriptor close-on-exec.
fn own_session_and_stdio(fds: &ChildFds) {
    // SAFETY: prctl with integer arguments.
    check(fds, STEP_PDEATHSIG, unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    });
    // SAFETY: setsid takes no arguments.
    check(fds, STEP_SETSID, unsafe { libc::setsid() });
    for (from, to) in [(fds.stdin, 0), (fds.stdout, 1), (fds.stderr, 2)] {
        if from != to {
            // SAFETY: dup2 of descriptors the parent handed us.
            check(fds, STEP_STDIO, unsafe { libc::dup2(from, to) });
        }
    }
    // Nothing else the parent had open may reach the sandbox.
    // SAFETY: close_range with integer arguments; CLOEXEC keeps our pipes until exec.
    check(fds, STEP_STDIO, unsafe {
        syscall_ret(libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ))
    });
}

/// Joins the sandbox's cgroup, brings `lo` up, creates the cgroup namespace, then runs the
/// prepared file-system operations (the root, its mounts, pivot_root).
fn enter_cgroup_and_build_root(p: &Prepared, fds: &ChildFds) {
    for procs in &p.cgroup_procs {
        check(fds, STEP_CGROUP, join_cgroup(procs));
    }
    check(fds, STEP_LOOPBACK, loopback_up());
    if p.cgroupns {
        // SAFETY: unshare with an integer flag.
        check(fds, STEP_CGROUPNS, unsafe {
            libc::unshare(libc::CLONE_NEWCGROUP)
        });
    }
    for (i, op) in p.ops.iter().enumerate() {
        // An op's index is its step number; more than u32::MAX ops cannot be (the parent
        // names any step it does not know "sandbox setup").
        check(fds, u32::try_from(i).unwrap_or(u32::MAX), run_op(op));
    }
}

/// The hostname, the rlimits, no supplementary groups, then the (empty) user namespace whose
/// maps the parent writes.
fn name_limits_and_user_namespace(p: &Prepared, fds: &ChildFds) {
    // SAFETY: the hostname is a live CString.
    check(fds, STEP_HOSTNAME, unsafe {
        libc::sethostname(p.hostname.as_ptr(), p.hostname.as_bytes().len())
    });
    for (res, v) in [(libc::RLIMIT_CORE, 0), (libc::RLIMIT_NOFILE, p.nofile)] {
        let lim = libc::rlimit {
            rlim_cur: v,
            rlim_max: v,
        };
        // SAFETY: setrlimit reads a live stack struct.
        check(fds, STEP_RLIMIT, unsafe { libc::setrlimit(res, &lim) });
    }
    // SAFETY: the raw setgroups syscall with an empty list.
    check(fds, STEP_SETGROUPS, unsafe {
        syscall_ret(libc::syscall(
            libc::SYS_setgroups,
            0usize,
            std::ptr::null::<libc::gid_t>(),
        ))
    });
    // SAFETY: unshare with an integer flag.
    check(fds, STEP_USERNS, unsafe {
        libc::unshare(libc::CLONE_NEWUSER)
    });
}

/// Drops every capability and switches to the agent's ids; fails closed if anything is left.
fn drop_privileges(p: &Prepared, fds: &ChildFds) {
    check(fds, STEP_CAPS, drop_bounding(p.last_cap));
    // SAFETY: the raw setresgid/setresuid syscalls with integers (mapped ids).
    check(fds, STEP_SETID, unsafe {
        syscall_ret(libc::syscall(libc::SYS_setresgid, p.gid, p.gid, p.gid))
    });
    // SAFETY: we are the single-threaded cloned child (`raw_setresuid`'s contract).
    check(fds, STEP_SETID, unsafe { raw_setresuid(p.uid) });
    check(fds, STEP_CAPS, clear_caps());
    if !verify_no_caps(p.last_cap) {
        fail(fds, STEP_VERIFY, libc::EPERM);
    }
    // The uid change cleared the parent-death signal; set it again.
    // SAFETY: prctl with integer arguments.
    check(fds, STEP_PDEATHSIG, unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    });
}

/// The workdir, no_new_privs, seccomp (last), and the forwarded signals blocked for the init.
fn lock_down(p: &Prepared, fds: &ChildFds) {
    // SAFETY: chdir to a live CString.
    check(fds, STEP_WORKDIR, unsafe {
        libc::chdir(p.workdir.as_ptr())
    });
    // SAFETY: prctl with integer arguments.
    check(fds, STEP_NNP, unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    });
    if let Some(f) = &p.seccomp {
        if let Err(e) = seccomp::install(f) {
            fail(fds, STEP_SECCOMP, e);
        }
    }
    // The forwarded signals stay blocked (hence pending, not dropped, for a pid 1 without
    // handlers) until the init has installed its handlers.
    // SAFETY: sigset operations on a stack value, then sigprocmask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in super::init::FORWARDED_SIGNALS
            .iter()
            .chain(&[libc::SIGCHLD])
        {
            libc::sigaddset(&mut set, *sig);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Starts the agent, which execs the command; returns its pid.
fn start_agent(p: &Prepared, fds: &ChildFds) -> libc::c_int {
    // The agent: its own process group, an empty signal mask, then the command. It is started
    // the way posix_spawn does it: sharing our memory (CLONE_VM) on a stack of its own, while
    // we wait (CLONE_VFORK) until it has exec'd or exited. No page tables are copied and
    // nothing is faulted in twice, and nothing it does can reach our memory: it only makes
    // raw syscalls on what `exec` points to, then execs or exits.
    let exec = AgentExec {
        candidates: &p.agent_candidates,
        argv: p.agent_argv.as_ptr(),
        envp: p.envp.as_ptr(),
        report: fds.report,
    };
    // Left uninitialised: only the pages the agent's few calls use are ever touched.
    let mut stack = std::mem::MaybeUninit::<AgentStack>::uninit();
    // SAFETY: the stack grows down from the end of `stack`, which outlives the child's use of
    // it (CLONE_VFORK suspends us until the child execs or exits); a stack is written before it
    // is read, so its bytes need no initialisation; `exec` lives as long.
    let agent = unsafe {
        libc::clone(
            agent_entry,
            stack.as_mut_ptr().cast::<u8>().add(AGENT_STACK).cast(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&exec as *const AgentExec).cast_mut().cast(),
        )
    };
    if agent < 0 {
        fail(fds, STEP_FORK, errno());
    }
    agent
}
