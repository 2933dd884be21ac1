//! The sandbox's seccomp filters, built by a pure function ([`build`]) with seccompiler.
//!
//! Default allow, with EPERM for what an agent never needs: the whole mount API (old and new),
//! namespace creation and entry, tracing, kernel modules, kexec, bpf, perf, keyrings,
//! userfaultfd, io_uring, raw and packet sockets, terminal injection ioctls. `clone3` answers
//! ENOSYS (its flags live in memory a filter cannot read, so libc falls back to `clone`, whose
//! flags are checked), and x32 syscall numbers (>= 0x40000000) are refused. Non-x86_64
//! architectures are killed by seccompiler's arch check.
//!
//! Three programs are installed, most specific last: the deny list (EPERM), `clone3` (ENOSYS),
//! and the x32 guard. The kernel runs them all and takes the strictest answer.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::policy::syscalls;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("sandbox.seccomp.deny: `{0}` is not an x86_64 syscall name")]
    UnknownSyscall(String),
    #[error("cannot build the seccomp filter")]
    Build(#[from] seccompiler::BackendError),
}

/// Syscalls denied outright (EPERM).
pub const DENY: &[&str] = &[
    // mounts, old and new API
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "open_tree_attr",
    "mount_setattr",
    // namespaces
    "setns",
    // tracing and other processes' memory
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    // kernel
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "quotactl_fd",
    "syslog",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "iopl",
    "ioperm",
    "lookup_dcookie",
    "nfsservctl",
    "vhangup",
    "_sysctl",
    "uselib",
    // bpf, perf, keyrings, userfaultfd, io_uring
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    // file handles bypass path checks
    "open_by_handle_at",
    "name_to_handle_at",
    // fanotify marks the whole file system
    "fanotify_init",
];

/// Namespace flags that `clone` and `unshare` may not carry.
pub const NS_FLAGS: &[u64] = &[
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWCGROUP as u64,
    0x80, // CLONE_NEWTIME
];

pub const TIOCSTI: u64 = 0x5412;
pub const TIOCLINUX: u64 = 0x541C;
const AF_INET: u64 = libc::AF_INET as u64;
const AF_INET6: u64 = libc::AF_INET6 as u64;
const AF_PACKET: u64 = libc::AF_PACKET as u64;
const SOCK_RAW: u64 = libc::SOCK_RAW as u64;
/// The low bits of socket(2)'s `type` hold the type; the rest are SOCK_NONBLOCK/SOCK_CLOEXEC.
const SOCK_TYPE_MASK: u64 = 0xf;
/// x32 syscalls are the x86_64 numbers with this bit set.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The compiled filters, installed in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filters {
    pub programs: Vec<BpfProgram>,
}

fn nr(name: &str) -> Result<i64, SeccompError> {
    syscalls::number(name).ok_or_else(|| SeccompError::UnknownSyscall(name.to_string()))
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, SeccompError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value).map_err(SeccompError::Build)
}

fn dcond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, SeccompError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(SeccompError::Build)
}

fn rule(conds: Vec<SeccompCondition>) -> Result<SeccompRule, SeccompError> {
    Ok(SeccompRule::new(conds)?)
}

/// The deny rules: syscall number -> rules (an empty list denies unconditionally). Pure.
pub fn deny_rules(extra: &[String]) -> Result<BTreeMap<i64, Vec<SeccompRule>>, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for name in DENY.iter().copied() {
        // Names this kernel's table lacks (e.g. very new syscalls) are skipped, not fatal.
        if let Some(n) = syscalls::number(name) {
            rules.insert(n, vec![]);
        }
    }
    for name in extra {
        rules.insert(nr(name)?, vec![]);
    }
    // clone(flags, ...) and unshare(flags): any namespace flag.
    for call in ["clone", "unshare"] {
        let n = nr(call)?;
        if rules.get(&n).is_some_and(Vec::is_empty) {
            continue; // already denied outright by the blueprint
        }
        let rs = NS_FLAGS
            .iter()
            .map(|f| rule(vec![cond(0, SeccompCmpOp::MaskedEq(*f), *f)?]))
            .collect::<Result<Vec<_>, _>>()?;
        rules.insert(n, rs);
    }
    // socket(AF_PACKET, ...), socket(AF_INET/AF_INET6, SOCK_RAW, ...).
    let socket = nr("socket")?;
    if !rules.get(&socket).is_some_and(Vec::is_empty) {
        rules.insert(
            socket,
            vec![
                rule(vec![dcond(0, SeccompCmpOp::Eq, AF_PACKET)?])?,
                rule(vec![
                    dcond(0, SeccompCmpOp::Eq, AF_INET)?,
                    dcond(1, SeccompCmpOp::MaskedEq(SOCK_TYPE_MASK), SOCK_RAW)?,
                ])?,
                rule(vec![
                    dcond(0, SeccompCmpOp::Eq, AF_INET6)?,
                    dcond(1, SeccompCmpOp::MaskedEq(SOCK_TYPE_MASK), SOCK_RAW)?,
                ])?,
            ],
        );
    }
    // ioctl(fd, TIOCSTI | TIOCLINUX, ...): typing into a terminal.
    let ioctl = nr("ioctl")?;
    if !rules.get(&ioctl).is_some_and(Vec::is_empty) {
        rules.insert(
            ioctl,
            vec![
                rule(vec![dcond(1, SeccompCmpOp::Eq, TIOCSTI)?])?,
                rule(vec![dcond(1, SeccompCmpOp::Eq, TIOCLINUX)?])?,
            ],
        );
    }
    Ok(rules)
}

/// Builds the three programs. Pure.
pub fn build(extra_deny: &[String]) -> Result<Filters, SeccompError> {
    let arch = TargetArch::x86_64;
    let compile = |rules, action| -> Result<BpfProgram, SeccompError> {
        let f = SeccompFilter::new(rules, SeccompAction::Allow, action, arch)?;
        Ok(BpfProgram::try_from(f)?)
    };
    let deny = compile(
        deny_rules(extra_deny)?,
        SeccompAction::Errno(libc::EPERM as u32),
    )?;
    let mut clone3 = BTreeMap::new();
    clone3.insert(nr("clone3")?, vec![]);
    let clone3 = compile(clone3, SeccompAction::Errno(libc::ENOSYS as u32))?;
    Ok(Filters {
        programs: vec![deny, clone3, x32_guard()],
    })
}

/// A hand-written program: on x86_64, syscall numbers with the x32 bit get EPERM.
pub fn x32_guard() -> BpfProgram {
    use seccompiler::sock_filter;
    const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const BPF_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const BPF_JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
    const BPF_RET_K: u16 = 0x06;
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    const RET_ALLOW: u32 = 0x7fff_0000;
    const RET_ERRNO: u32 = 0x0005_0000;
    let ins = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    vec![
        ins(BPF_LD_W_ABS, 0, 0, 4),              // A = arch
        ins(BPF_JEQ_K, 0, 3, AUDIT_ARCH_X86_64), // other arch: allow here (the deny filter kills it)
        ins(BPF_LD_W_ABS, 0, 0, 0),              // A = nr
        ins(BPF_JSET_K, 0, 1, X32_SYSCALL_BIT),  // x32 bit set?
        ins(BPF_RET_K, 0, 0, RET_ERRNO | libc::EPERM as u32),
        ins(BPF_RET_K, 0, 0, RET_ALLOW),
    ]
}

/// Installs the filters on the calling thread. Async-signal-safe (raw syscalls only, no
/// allocation), so it may run in a freshly forked child. Needs no_new_privs set (or
/// CAP_SYS_ADMIN). Returns the errno on failure.
pub fn install(filters: &Filters) -> Result<(), i32> {
    for p in &filters.programs {
        // The kernel takes at most BPF_MAXINSNS (4096) instructions; more is EINVAL anyway.
        let Ok(len) = u16::try_from(p.len()) else {
            return Err(libc::EINVAL);
        };
        let prog = libc::sock_fprog {
            len,
            filter: p.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: `prog` points at `p`, a live slice of `len` BPF instructions whose layout
        // matches `libc::sock_filter` (both are the kernel's `struct sock_filter`, repr(C)); the
        // kernel copies the program before returning.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const libc::sock_fprog,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EINVAL));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "seccomp_tests.rs"]
mod tests;
