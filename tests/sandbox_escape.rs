//! Escape attempts, each run inside a real sandbox through `nemoclaw run` (root, real kernel).
//! Every case asserts that the attack fails, and where possible also that a harmless control
//! succeeds, so a broken harness cannot pass by accident.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "a test stops loudly at the first broken step"
)]

mod sandbox_support;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sandbox_support::*;

// ---------------------------------------------------------------- host files out of reach

#[test]
fn cannot_read_etc_shadow() {
    let lab = Lab::new();
    assert!(
        Path::new("/etc/shadow").exists(),
        "precondition: the host has /etc/shadow"
    );
    let bp = lab.blueprint("esc-shadow", "");
    let o = lab.sh(&bp, "cat /etc/shadow");
    o.failed();
    assert!(o.has("No such file"), "{}", o.stderr);
    lab.sh(&bp, "cat /etc/passwd | grep -q '^agent:'").ok();
}

#[test]
fn cannot_see_root_home_or_host_home_dirs() {
    let lab = Lab::new();
    let bp = lab.blueprint("esc-roothome", "");
    lab.sh(&bp, "ls /root").failed();
    lab.sh(&bp, "ls /home").failed();
    lab.sh(&bp, "test -d /usr").ok();
}

#[test]
fn cannot_reach_the_nemoclaw_home_or_credentials() {
    let lab = Lab::new();
    let bp = lab.blueprint("esc-home", "");
    lab.sh(&bp, "true").ok();
    let cred = lab.home.join("credentials/openai");
    std::fs::write(&cred, "sk-very-secret-value").unwrap();
    let o = lab.sh(
        &bp,
        &format!(
            "cat {}; ls {}; ls {}",
            cred.display(),
            lab.home.display(),
            lab.dir.path().display()
        ),
    );
    o.failed();
    assert!(!o.has("sk-very-secret-value"));
    let o = lab.sh(&bp, "grep -rs sk-very-secret-value / --exclude-dir=proc --exclude-dir=sys --exclude-dir=usr; echo done");
    assert!(!o.stdout.contains("sk-very"), "{}", o.stdout);
}

#[test]
fn host_environment_does_not_leak() {
    let lab = Lab::new();
    let bp = lab.blueprint("esc-env", "");
    let o = from_cmd(
        lab.command(&bp, &["/usr/bin/env"])
            .env("NEMOCLAW_TEST_HOST_SECRET", "leaked-value"),
    );
    o.ok();
    assert!(!o.stdout.contains("leaked-value"), "{}", o.stdout);
    assert!(o.stdout.contains("HOME=/workspace/state"));
}

// ---------------------------------------------------------------- writes

#[test]
fn cannot_write_outside_state_and_tmp() {
    let lab = Lab::new();
    let bp = lab.blueprint("esc-write", "");
    for target in [
        "/x",
        "/etc/passwd",
        "/etc/newfile",
        "/usr/x",
        "/bin/x",
        "/opt/nemoclaw/bin/nemoclaw",
        "/workspace/x",
        "/dev/x",
        "/proc/x",
    ] {
        let o = lab.sh(&bp, &format!("echo pwned > {target}"));
        o.failed();
    }
    lab.sh(
        &bp,
        "echo ok > /workspace/state/ok && echo ok > /tmp/ok && cat /tmp/ok",
    )
    .ok();
    assert_eq!(
        std::fs::read_to_string(lab.state("esc-write").join("ok")).unwrap(),
        "ok\n"
    );
}

#[test]
fn blueprint_mounts_are_read_only_by_default() {
    let lab = Lab::new();
    let data = lab.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("in.txt"), "input").unwrap();
    let bp = lab.blueprint(
        "esc-romount",
        &format!(
            "filesystem:\n  mounts:\n    - {{host: {}, path: /data}}\n",
            data.display()
        ),
    );
    lab.sh(&bp, "cat /data/in.txt").ok();
    lab.sh(&bp, "echo x > /data/out.txt").failed();
    lab.sh(&bp, "rm /data/in.txt").failed();
    assert!(data.join("in.txt").exists() && !data.join("out.txt").exists());
}

#[test]
fn tmp_is_size_limited() {
    let lab = Lab::new();
    let bp = lab.blueprint("esc-tmpfill", "sandbox:\n  tmpSize: 4Mi\n");
    let o = lab.sh(
        &bp,
        "dd if=/dev/zero of=/tmp/fill bs=1M count=32 2>&1; ls -l /tmp/fill | awk '{print $5}'",
    );
    assert!(o.stdout.contains("No space left"), "{}", o.stdout);
    let size: u64 = o.stdout.lines().last().unwrap().trim().parse().unwrap();
    assert!(size <= 4 << 20, "{size}");
}

// ---------------------------------------------------------------- processes

#[test]
fn cannot_see_host_pids() {
    let lab = Lab::new();
    let bp = lab.blueprint("esc-pids", "");
    let o = lab.sh(&bp, "ls /proc | grep -E '^[0-9]+$' | wc -l; echo $$");
    o.ok();
    let mut lines = o.stdout.lines();
    let count: u32 = lines.next().unwrap().trim().parse().unwrap();
    assert!(count <= 5, "sees {count} pids");
    let host_pid = std::process::id();
    lab.sh(&bp, &format!("test -e /proc/{host_pid}/status"))
        .failed();
}

#[test]
fn cannot_kill_a_host_process() {
    let lab = Lab::new();
    let mut victim = Command::new("sleep").arg("30").spawn().unwrap();
    let bp = lab.blueprint("esc-kill", "");
    lab.sh(&bp, &format!("kill -9 {}", victim.id())).failed();
    lab.sh(&bp, "kill -9 -1; true").ok();
    assert!(
        victim.try_wait().unwrap().is_none(),
        "the host process survived"
    );
    victim.kill().unwrap();
    let _ = victim.wait();
}

#[test]
fn proc_1_root_is_the_sandbox_not_the_host() {
    let lab = Lab::new();
    let marker = lab.dir.path().join("host-marker");
    std::fs::write(&marker, "host").unwrap();
    let bp = lab.blueprint("esc-proc1", "");
    // The init's root is not even reachable (it is not dumpable); the agent's own magic root
    // link is the sandbox root, without the host's files.
    lab.sh(&bp, "ls /proc/1/root/").failed();
    lab.sh(
        &bp,
        "ls /proc/self/root/usr >/dev/null && ls /proc/2/root/usr >/dev/null",
    )
    .ok();
    for root in ["/proc/1/root", "/proc/self/root", "/proc/2/root"] {
        lab.sh(&bp, &format!("cat {root}{}", marker.display()))
            .failed();
        lab.sh(&bp, &format!("cat {root}/etc/shadow")).failed();
        lab.sh(&bp, &format!("ls {root}/root")).failed();
    }
}

#[test]
fn init_memory_environment_and_descriptors_are_out_of_reach() {
    let lab = Lab::new();
    let bp = lab.blueprint("esc-pid1", "");
    let script = "cat /proc/1/environ; cat /proc/1/maps; ls /proc/1/fd; dd if=/proc/1/mem bs=1 count=1 skip=4096; ls -l /proc/1/exe; echo end";
    let o = from_cmd(
        lab.command(&bp, &["/bin/sh", "-c", script])
            .env("NEMOCLAW_TEST_PARENT_SECRET", "parent-secret-value"),
    );
    assert!(o.stdout.ends_with("end\n"), "{}{}", o.stdout, o.stderr);
    assert!(!o.stdout.contains("parent-secret-value") && !o.stderr.contains("parent-secret-value"));
    assert_eq!(
        o.stderr.matches("Permission denied").count(),
        5,
        "environ, maps, fd, mem and exe are refused: {}",
        o.stderr
    );
    // The agent's own /proc entries stay readable (it is not the init's memory).
    lab.sh(
        &bp,
        "cat /proc/self/environ | tr '\\0' '\\n' | grep -q '^HOME=/workspace/state$'",
    )
    .ok();
}

#[test]
fn no_inherited_host_descriptors() {
    let lab = Lab::new();
    let bp = lab.blueprint("esc-fds", "");
    let secret_dir = lab.dir.path().join("secret");
    std::fs::create_dir(&secret_dir).unwrap();
    std::fs::write(secret_dir.join("key"), "secret").unwrap();
    let dir_fd = std::fs::File::open(&secret_dir).unwrap();
    let mut cmd = lab.command(
        &bp,
        &[
            "/bin/sh",
            "-c",
            "ls /proc/self/fd; cat /proc/self/fd/7/key; cat /proc/self/fd/8/key",
        ],
    );
    let raw = std::os::fd::AsRawFd::as_raw_fd(&dir_fd);
    // SAFETY: dup2 in the forked child before exec; the fds are live in the parent.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            libc::dup2(raw, 7);
            libc::dup2(raw, 8);
            Ok(())
        });
    }
    let o = from_cmd(&mut cmd);
    assert!(!o.stdout.contains("secret"), "{}", o.stdout);
    let fds: Vec<&str> = o.stdout.lines().collect();
    assert!(
        fds.iter().all(|f| ["0", "1", "2", "3"].contains(f)),
        "only stdio (and ls's own dir fd): {fds:?}"
    );
}

// ---------------------------------------------------------------- privileged syscalls

fn denied(name: &str, py: &str) {
    let lab = Lab::new();
    let bp = lab.blueprint(name, "");
    let o = lab.py(
        &bp,
        &format!(
            "e = {py}\nprint('errno', e)\nsys.exit(0 if e in (errno.EPERM, errno.ENOSYS) else 1)"
        ),
    );
    assert_eq!(o.code, 0, "{py}: {}{}", o.stdout, o.stderr);
}

#[test]
fn mount_old_api_is_denied() {
    denied("esc-mount", "sc(165, b'none', b'/tmp', b'tmpfs', 0, 0)");
    let lab = Lab::new();
    let bp = lab.blueprint("esc-mount2", "");
    lab.sh(&bp, "mount -t tmpfs none /tmp").failed();
    lab.sh(&bp, "umount /proc").failed();
}

#[test]
fn mount_new_api_is_denied() {
    denied("esc-fsopen", "sc(430, b'tmpfs', 0)");
}

#[test]
fn open_tree_and_move_mount_are_denied() {
    denied(
        "esc-opentree",
        "sc(428, -100, b'/', 1) or sc(429, -100, b'/tmp', -100, b'/x', 0)",
    );
}

#[test]
fn unshare_user_namespace_is_denied() {
    denied("esc-unshare", "sc(272, 0x10000000)");
    let lab = Lab::new();
    let bp = lab.blueprint("esc-unshare2", "");
    lab.sh(&bp, "unshare -Ur true").failed();
    lab.sh(&bp, "unshare -n true").failed();
}

#[test]
fn clone_with_namespace_flags_is_denied() {
    // clone(CLONE_NEWUSER|SIGCHLD): EPERM; clone3: ENOSYS.
    denied("esc-clone", "sc(56, 0x10000000 | 17, 0, 0, 0, 0)");
    denied("esc-clone3", "sc(435, 0, 0)");
}

#[test]
fn setns_and_chroot_are_denied() {
    denied(
        "esc-setns",
        "sc(308, os.open('/proc/self/ns/net', os.O_RDONLY), 0)",
    );
    denied("esc-chroot", "sc(161, b'/tmp')");
}

#[test]
fn ptrace_of_a_sibling_is_denied() {
    let lab = Lab::new();
    let bp = lab.blueprint("esc-ptrace", "");
    let o = lab.py(&bp, "import subprocess\np = subprocess.Popen(['sleep', '5'])\ne = sc(101, 16, p.pid, 0, 0)\np.kill()\nprint('errno', e)\nsys.exit(0 if e == errno.EPERM else 1)");
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    denied("esc-pvm", "sc(310, 1, 0, 0, 0, 0, 0)");
}

#[test]
fn module_loading_is_denied() {
    denied("esc-finitmod", "sc(313, 0, b'', 0)");
    denied("esc-initmod", "sc(175, 0, 0, b'')");
    denied("esc-delmod", "sc(176, b'ext4', 0)");
}

#[test]
fn bpf_is_denied() {
    denied("esc-bpf", "sc(321, 0, 0, 0)");
}

#[test]
fn kexec_is_denied() {
    denied("esc-kexec", "sc(246, 0, 0, 0, 0)");
    denied("esc-kexecf", "sc(320, 0, 0, 0, b'', 0)");
}

#[test]
fn keyring_userfaultfd_perf_and_io_uring_are_denied() {
    denied("esc-keyctl", "sc(250, 0, 0, 0, 0, 0)");
    denied("esc-uffd", "sc(323, 0)");
    denied("esc-perf", "sc(298, 0, 0, -1, -1, 0)");
    denied("esc-iouring", "sc(425, 8, 0)");
    denied("esc-handle", "sc(304, 0, 0, 0)");
}

#[test]
fn packet_and_raw_sockets_are_denied() {
    let lab = Lab::new();
    let bp = lab.blueprint("esc-sockets", "");
    let script = r#"
bad = 0
for fam, typ, proto in [(socket.AF_PACKET, socket.SOCK_RAW, 0x0300), (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP), (socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6), (socket.AF_PACKET, socket.SOCK_DGRAM, 0)]:
    try:
        socket.socket(fam, typ, proto); print('opened', fam, typ); bad += 1
    except PermissionError:
        pass
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM); s.close()
sys.exit(bad)
"#;
    let o = lab.py(&bp, script);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
}

#[test]
fn setuid_binaries_do_not_regain_privileges() {
    let lab = Lab::new();
    let bin = lab.dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let prog = cc(&bin, "euid", "#include <stdio.h>\n#include <unistd.h>\nint main(){setuid(0);printf(\"%d %d\\n\",getuid(),geteuid());return 0;}\n");
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let bp = lab.blueprint(
        "esc-setuid",
        &format!(
            "filesystem:\n  mounts:\n    - {{host: {}, path: /data}}\n",
            bin.display()
        ),
    );
    let o = lab.run(&bp, &["/data/euid"]);
    o.ok();
    assert_eq!(o.stdout.trim(), "1000 1000");
    // The host's own setuid-root binaries are just as powerless.
    lab.sh(&bp, "su -c id root </dev/null").failed();
    let o = lab.py(
        &bp,
        "e = sc(105, 0)\nprint(os.getuid(), e)\nsys.exit(0 if e == errno.EPERM else 1)",
    );
    assert_eq!(o.code, 0, "setuid(0): {}{}", o.stdout, o.stderr);
}

#[test]
fn no_capabilities_no_new_privs_and_seccomp_on() {
    let lab = Lab::new();
    let bp = lab.blueprint("esc-caps", "");
    let o = lab.sh(
        &bp,
        "grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status",
    );
    o.ok();
    for line in o.stdout.lines() {
        let (k, v) = line.split_once(':').unwrap();
        let v = v.trim();
        match k {
            "NoNewPrivs" => assert_eq!(v, "1"),
            "Seccomp" => assert_eq!(v, "2"),
            _ => assert_eq!(v, "0000000000000000", "{k}"),
        }
    }
}

#[test]
fn tiocsti_injection_is_denied_and_no_tty_is_shared() {
    let lab = Lab::new();
    let bp = lab.blueprint("esc-tiocsti", "");
    let o = lab.py(&bp, "import fcntl, termios\ntry:\n    fcntl.ioctl(0, termios.TIOCSTI, b'x'); sys.exit(1)\nexcept OSError as e:\n    print(e.errno); sys.exit(0 if e.errno == errno.EPERM else 2)");
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    // With a real terminal as stdin, the sandbox still gets no terminal at all.
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut cmd = lab.command(
        &bp,
        &[
            "/bin/sh",
            "-c",
            "for f in 0 1 2; do [ -t $f ] && echo tty$f; done; cat /dev/tty; echo end",
        ],
    );
    cmd.stdin(Stdio::from(pty.slave));
    let o = from_cmd(&mut cmd);
    assert!(!o.stdout.contains("tty"), "{}", o.stdout);
    assert!(o.stdout.contains("end"));
}

// ---------------------------------------------------------------- resources

#[test]
fn fork_bomb_is_contained_by_pids() {
    let lab = Lab::new();
    let bp = lab.blueprint("esc-forkbomb", "resources:\n  pids: 32\n");
    let start = Instant::now();
    let script = "import time\nok = fail = 0\nend = time.time() + 2\nwhile time.time() < end:\n    try:\n        pid = os.fork()\n        if pid == 0:\n            time.sleep(3); os._exit(0)\n        ok += 1\n    except OSError:\n        fail += 1\nprint(ok, fail)\nsys.stdout.flush()\nos._exit(0)";
    let o = lab.py(&bp, script);
    let mut it = o.stdout.split_whitespace();
    let ok: u32 = it
        .next()
        .unwrap_or_else(|| panic!("{}{}", o.stdout, o.stderr))
        .parse()
        .unwrap();
    let fail: u32 = it.next().unwrap().parse().unwrap();
    assert!(ok < 32, "forked {ok}");
    assert!(fail > 0, "the pids limit was never hit");
    assert!(start.elapsed() < Duration::from_secs(30));
    // The host stays responsive meanwhile (checked after: it is, or this would not return).
    assert!(Command::new("true").status().unwrap().success());
}

#[test]
fn memory_hog_is_oom_killed() {
    let lab = Lab::new();
    let bp = lab.blueprint("esc-memhog", "resources:\n  memory: 64Mi\n");
    let o = lab.py(&bp, "x = b'x' * (512 << 20)\nprint('allocated')");
    assert_eq!(o.code, 137, "{}{}", o.stdout, o.stderr);
    assert!(!o.stdout.contains("allocated"));
    assert!(o.stderr.contains("memory limit"), "{}", o.stderr);
}

// ---------------------------------------------------------------- isolation between sandboxes

#[test]
fn two_sandboxes_cannot_signal_or_trace_each_other() {
    let lab = Lab::new();
    let a = lab.blueprint("esc-peer-a", "");
    let b = lab.blueprint("esc-peer-b", "");
    let mut a_run = lab
        .command(&a, &["sleep", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    lab.sh(&b, "true").ok();
    // Wait for A's agent to appear in its cgroup, then find its host pid and uid.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (a_lo, a_hi) = loop {
        if lab.home.join("run/id-ranges.json").exists() {
            let t = std::fs::read_to_string(lab.home.join("run/id-ranges.json")).unwrap();
            if t.contains("esc-peer-a") {
                break id_range(&lab.home, "esc-peer-a");
            }
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    };
    // The agent (`sleep`), once it runs: the sandbox's first process is host root for a moment
    // during setup.
    let a_pid = loop {
        let agent = pids_in_cgroup_named("esc-peer-a").into_iter().find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep")
        });
        if let Some(p) = agent {
            break p;
        }
        assert!(Instant::now() < deadline, "A's agent never appeared");
        std::thread::sleep(Duration::from_millis(20));
    };
    let status = std::fs::read_to_string(format!("/proc/{a_pid}/status")).unwrap();
    let a_uid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        a_uid >= a_lo && a_uid < a_hi,
        "A runs as its own mapped uid"
    );
    let (b_lo, b_hi) = id_range(&lab.home, "esc-peer-b");
    assert!(b_hi <= a_lo || a_hi <= b_lo, "different host uid ranges");
    // From inside B, A's pid does not exist, and ptrace is denied anyway.
    lab.sh(&b, &format!("kill -0 {a_pid}")).failed();
    // As B's host uid (without any namespace), A is still out of reach: signals need the same uid.
    let b_uid = b_lo + 1000;
    // SAFETY: fork; the child only calls setresgid/setresuid/kill/_exit.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // SAFETY: raw calls in the forked child, then _exit.
        unsafe {
            libc::setgroups(0, std::ptr::null());
            libc::setresgid(b_uid, b_uid, b_uid);
            libc::setresuid(b_uid, b_uid, b_uid);
            let sig = libc::kill(a_pid, libc::SIGKILL);
            let tr = libc::ptrace(libc::PTRACE_ATTACH, a_pid, 0, 0);
            libc::_exit(if sig != 0 && tr != 0 { 0 } else { 1 });
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(child, &mut status, 0) };
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "B's uid could signal or trace A"
    );
    assert!(
        Path::new(&format!("/proc/{a_pid}")).exists(),
        "A is still alive"
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(a_run.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let st = a_run.wait().unwrap();
    assert_eq!(
        st.code(),
        Some(128 + 15),
        "SIGTERM was forwarded to the agent"
    );
}

// ---------------------------------------------------------------- network, names, devices

#[test]
fn network_is_sealed_and_every_connection_meets_the_gateway() {
    let lab = Lab::new();
    let bp = lab.blueprint("esc-net", "");
    // The only interfaces are lo and the veth pair whose both ends are inside the sandbox.
    let o = lab.sh(
        &bp,
        "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ' '",
    );
    assert_eq!(o.stdout.trim(), "lo nc0 nc1", "{}", o.stderr);
    // A connection to any address lands on the gateway, which refuses what the blueprint does
    // not allow (198.18.0.0/15 is reserved for benchmarks: nothing is there, and the gateway
    // never dials an address it was handed).
    let script = "s = socket.create_connection(('198.18.0.9', 80), timeout=5)\ns.sendall(b'GET / HTTP/1.1\\r\\nHost: 198.18.0.9\\r\\nConnection: close\\r\\n\\r\\n')\nprint(s.recv(4096).decode(errors='replace'))";
    let o = lab.py(&bp, script);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(o.stdout.starts_with("HTTP/1.1 403"), "{}", o.stdout);
    assert!(o.stdout.contains("policy_denied"), "{}", o.stdout);
}

#[test]
fn hostname_and_minimal_dev_and_no_sys() {
    let lab = Lab::new();
    let bp = lab.blueprint("esc-dev", "");
    let o = lab.sh(&bp, "hostname; ls /dev | tr '\\n' ' '");
    o.ok();
    assert!(o.stdout.starts_with("esc-dev\n"), "{}", o.stdout);
    for absent in ["sda", "mem", "kmsg", "vda", "kvm"] {
        assert!(
            !o.stdout.split_whitespace().any(|d| d == absent),
            "/dev/{absent}: {}",
            o.stdout
        );
    }
    lab.sh(&bp, "ls /sys/kernel").failed();
    lab.sh(
        &bp,
        "echo x > /dev/null && head -c 4 /dev/urandom | wc -c | grep -q 4",
    )
    .ok();
}

// ---------------------------------------------------------------- lifecycle

#[test]
fn state_survives_and_nothing_is_left_behind() {
    let lab = Lab::new();
    let bp = lab.blueprint("esc-state", "resources:\n  memory: 128Mi\n  pids: 32\n");
    lab.sh(
        &bp,
        "echo remembered > /workspace/state/note; sleep 0.2 & sleep 0.1",
    )
    .ok();
    assert_eq!(
        std::fs::read_to_string(lab.state("esc-state").join("note")).unwrap(),
        "remembered\n"
    );
    lab.sh(&bp, "grep -q remembered /workspace/state/note").ok();
    // Nothing left: cgroups, mounts, processes of the sandbox's uid range.
    assert!(
        cgroup_dirs("esc-state").is_empty(),
        "leftover cgroups: {:?}",
        cgroup_dirs("esc-state")
    );
    let root = lab.home.join("run/esc-state/root");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(root.to_str().unwrap()), "leftover mount");
    let (lo, _) = id_range(&lab.home, "esc-state");
    assert!(
        pids_in_cgroup_named("esc-state").is_empty(),
        "leftover processes"
    );
    let st = std::fs::metadata(lab.state("esc-state")).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&st),
        lo + 1000,
        "state dir owned by the mapped uid"
    );
}

#[test]
fn exit_codes_and_signals_pass_through() {
    let lab = Lab::new();
    let bp = lab.blueprint("esc-exit", "");
    assert_eq!(lab.sh(&bp, "exit 7").code, 7);
    assert_eq!(lab.sh(&bp, "kill -KILL $$").code, 137);
    let o = lab.run(&bp, &["no-such-command"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("command: `no-such-command` is not found"),
        "{}",
        o.stderr
    );
    // stdout and stderr are both streamed.
    let o = lab.sh(&bp, "echo out; echo err >&2");
    assert_eq!((o.stdout.as_str(), o.stderr.as_str()), ("out\n", "err\n"));
    let mut child = lab
        .command(&bp, &["cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"through stdin").unwrap();
    drop(child.stdin.take());
    let mut s = String::new();
    child.stdout.take().unwrap().read_to_string(&mut s).unwrap();
    assert_eq!(s, "through stdin");
    assert!(child.wait().unwrap().success());
}
