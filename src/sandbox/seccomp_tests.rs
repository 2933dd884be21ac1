use super::*;

#[test]
fn deny_list_covers_both_mount_apis_and_namespaces() {
    let rules = deny_rules(&[]).unwrap();
    for name in [
        "mount",
        "umount2",
        "fsopen",
        "fsconfig",
        "fsmount",
        "move_mount",
        "open_tree",
        "mount_setattr",
        "pivot_root",
        "chroot",
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "keyctl",
        "add_key",
        "request_key",
        "setns",
        "reboot",
        "swapon",
        "swapoff",
        "open_by_handle_at",
        "io_uring_setup",
        "acct",
        "quotactl",
    ] {
        let n = syscalls::number(name).unwrap();
        assert!(
            rules.get(&n).is_some_and(Vec::is_empty),
            "{name} must be denied outright"
        );
    }
    for name in ["clone", "unshare", "socket", "ioctl"] {
        let n = syscalls::number(name).unwrap();
        assert!(
            rules.get(&n).is_some_and(|r| !r.is_empty()),
            "{name} is denied by argument"
        );
    }
    assert!(!rules.contains_key(&syscalls::number("read").unwrap()));
    assert!(
        !rules.contains_key(&syscalls::number("clone3").unwrap()),
        "clone3 is in its own ENOSYS filter"
    );
}

#[test]
fn blueprint_additions_are_checked() {
    let err = build(&["not_a_syscall".to_string()]).unwrap_err();
    assert!(err.to_string().contains("sandbox.seccomp.deny"), "{err}");
    let rules = deny_rules(&["getcwd".to_string()]).unwrap();
    assert!(rules
        .get(&syscalls::number("getcwd").unwrap())
        .is_some_and(Vec::is_empty));
    let f = build(&[]).unwrap();
    assert_eq!(f.programs.len(), 3);
    assert!(f.programs.iter().all(|p| !p.is_empty() && p.len() < 4096));
}

/// Runs `f` in a forked child under the filters and returns its exit code. The child only makes
/// raw syscalls (the test harness is multithreaded).
fn under_filter(extra: &[&str], f: fn() -> i32) -> i32 {
    let filters = build(&extra.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    // SAFETY: the child calls only async-signal-safe functions (prctl, seccomp, raw syscalls,
    // _exit) and never returns into the test harness.
    match unsafe { libc::fork() } {
        0 => {
            // SAFETY: plain prctl call with integer arguments.
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            let code = if install(&filters).is_ok() { f() } else { 99 };
            // SAFETY: leaving the child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        -1 => panic!("fork failed"),
        pid => {
            let mut status = 0;
            // SAFETY: waiting for our own child; `status` is a valid out pointer.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            assert!(libc::WIFEXITED(status), "child died: status {status}");
            libc::WEXITSTATUS(status)
        }
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// 0 when the raw syscall failed with `want`, 1 when it succeeded, 2 for another errno.
fn expect(r: libc::c_long, want: i32) -> i32 {
    if r >= 0 {
        1
    } else if errno() == want {
        0
    } else {
        2
    }
}

#[test]
fn real_filter_denies_mount_and_new_mount_api() {
    assert_eq!(
        under_filter(&[], || {
            // SAFETY: raw syscalls with valid (static C string) or null pointer arguments.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_mount,
                    c"none".as_ptr(),
                    c"/".as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    0,
                )
            };
            expect(r, libc::EPERM)
        }),
        0
    );
    assert_eq!(
        under_filter(&[], || {
            // SAFETY: fsopen with a static C string.
            let r = unsafe { libc::syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), 0) };
            expect(r, libc::EPERM)
        }),
        0
    );
    assert_eq!(
        under_filter(&[], || {
            // SAFETY: open_tree with a static C string.
            let r = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c"/".as_ptr(), 1) };
            expect(r, libc::EPERM)
        }),
        0
    );
}

#[test]
fn real_filter_blocks_namespaces_and_clone3() {
    assert_eq!(
        under_filter(&[], || expect(
            unsafe_unshare(libc::CLONE_NEWUSER),
            libc::EPERM
        )),
        0
    );
    assert_eq!(
        under_filter(&[], || expect(
            unsafe_unshare(libc::CLONE_NEWNET),
            libc::EPERM
        )),
        0
    );
    assert_eq!(
        under_filter(&[], || {
            // SAFETY: clone3 with a null args pointer; the filter answers before the kernel reads it.
            let r = unsafe { libc::syscall(libc::SYS_clone3, 0usize, 0usize) };
            expect(r, libc::ENOSYS)
        }),
        0
    );
}

fn unsafe_unshare(flags: i32) -> libc::c_long {
    // SAFETY: unshare takes only an integer.
    unsafe { libc::syscall(libc::SYS_unshare, flags) }
}

#[test]
fn real_filter_blocks_raw_and_packet_sockets_but_not_tcp() {
    assert_eq!(
        under_filter(&[], || {
            // SAFETY: socket takes only integers.
            expect(
                unsafe { libc::syscall(libc::SYS_socket, libc::AF_PACKET, libc::SOCK_RAW, 0) },
                libc::EPERM,
            )
        }),
        0
    );
    assert_eq!(
        under_filter(&[], || {
            // SAFETY: socket takes only integers.
            expect(
                unsafe {
                    libc::syscall(
                        libc::SYS_socket,
                        libc::AF_INET,
                        libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                        libc::IPPROTO_ICMP,
                    )
                },
                libc::EPERM,
            )
        }),
        0
    );
    assert_eq!(
        under_filter(&[], || {
            // SAFETY: socket takes only integers.
            let r = unsafe { libc::syscall(libc::SYS_socket, libc::AF_INET, libc::SOCK_STREAM, 0) };
            if r >= 0 {
                0
            } else {
                3
            }
        }),
        0
    );
}

#[test]
fn real_filter_blocks_tiocsti_x32_and_additions() {
    assert_eq!(
        under_filter(&[], || {
            let c: u8 = b'x';
            // SAFETY: ioctl on fd 0 with a pointer to a live byte.
            expect(
                unsafe { libc::syscall(libc::SYS_ioctl, 0, TIOCSTI, &c as *const u8) },
                libc::EPERM,
            )
        }),
        0
    );
    assert_eq!(
        under_filter(&[], || {
            // SAFETY: x32 getpid takes no arguments.
            expect(
                unsafe { libc::syscall(libc::SYS_getpid | X32_SYSCALL_BIT as i64) },
                libc::EPERM,
            )
        }),
        0
    );
    assert_eq!(
        under_filter(&["getcwd"], || {
            let mut buf = [0u8; 64];
            // SAFETY: getcwd writes at most 64 bytes into `buf`.
            expect(
                unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) },
                libc::EPERM,
            )
        }),
        0
    );
    assert_eq!(
        under_filter(&[], || {
            // SAFETY: getpid takes no arguments.
            if unsafe { libc::syscall(libc::SYS_getpid) } > 0 {
                0
            } else {
                4
            }
        }),
        0,
        "ordinary syscalls still work"
    );
}
