//! cgroup v2 for real, on a host that is not v2: boots a Linux VM whose only cgroup hierarchy is
//! v2 with every controller (Debian's kernel, `cgroup_no_v1=all`, see `tests/vm/`), sharing this
//! host's root read-only, and runs [`in_vm_v2_checks`] (this test binary, inside the VM) against
//! the real nemoclaw binary there: limits, OOM, fork bomb, placement below `nemoclaw/<name>`,
//! the supervisor's own leaf (no internal processes), status, stop, two sandboxes side by side.
//!
//! Needs root (like the other sandbox suites), qemu-system-x86 (`scripts/install-deps --tests`) and
//! Debian's package archive for the kernel and busybox the first time (cached under target/).
//! Uses KVM when `/dev/kvm` opens, TCG otherwise, and says which.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::result_large_err,
    reason = "a test stops loudly at the first broken step; its error paths are cold"
)]

mod vm;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nemoclaw::supervisor::client::Client;
use nemoclaw::supervisor::protocol::{Request, State};

const BIN: &str = env!("CARGO_BIN_EXE_nemoclaw");
const CG: &str = "/sys/fs/cgroup";

/// The checks [`in_vm_v2_checks`] must report as passed.
const CHECKS: &[&str] = &[
    "layout-is-pure-v2",
    "run-limits-and-placement",
    "run-leaves-nothing",
    "oom-kill",
    "fork-bomb",
    "supervisor-leaves",
    "supervisor-status",
    "exec-joins-sandbox-leaf",
    "freeze-thaw-checkpoint",
    "two-sandboxes",
    "stop-leaves-nothing",
];

/// The directory holding both this test binary and the nemoclaw binary (`target/<profile>`).
fn keep_dir(exe: &Path) -> String {
    let bin_dir = Path::new(BIN).parent().unwrap();
    assert!(
        exe.starts_with(bin_dir),
        "{} is not under {}",
        exe.display(),
        bin_dir.display()
    );
    bin_dir.display().to_string()
}

#[test]
fn pure_cgroup_v2_host_in_a_vm() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the cgroup v2 VM test boots a VM sharing this host's root and creates cgroups in it: run it as root"
    );
    let (accel, why) = vm::accel();
    println!("cgroup v2 VM: accelerator {accel:?} ({why})");
    vm::require_qemu();
    let k = vm::kernel();
    let exe = std::env::current_exe().unwrap();
    let initrd = vm::initramfs(
        &k,
        &[
            (
                "VM_COMMAND",
                format!(
                    "NEMOCLAW_IN_VM=1 {} in_vm_v2_checks --ignored --exact --nocapture --test-threads=1",
                    exe.display()
                ),
            ),
            // The build directory (this test binary and nemoclaw's) must stay visible in the VM
            // wherever the checkout is, /tmp included.
            ("VM_KEEP", keep_dir(&exe)),
        ],
    );
    let timeout = match accel {
        vm::Accel::Kvm => Duration::from_secs(240),
        vm::Accel::Tcg => Duration::from_secs(900),
    };
    let b = vm::boot(&k, &initrd, accel, timeout);
    println!(
        "cgroup v2 VM: kernel {}, {:?}, wall time {:.1}s",
        k.release,
        b.accel,
        b.wall.as_secs_f64()
    );
    let c = &b.console;
    assert!(
        !b.timed_out,
        "the VM did not power off within {timeout:?} ({accel:?})"
    );
    assert!(
        c.contains("VM-BOOTED"),
        "the VM did not boot to its test ({accel:?})"
    );
    let failed: Vec<&str> = c.lines().filter(|l| l.contains("VM-FAIL")).collect();
    assert!(failed.is_empty(), "failed in the VM: {failed:#?}");
    for check in CHECKS {
        assert!(
            // (libtest may print "test in_vm_v2_checks ... " in front of the first one)
            c.lines()
                .any(|l| l.trim_end().ends_with(&format!("VM-PASS {check}"))),
            "no VM-PASS {check} from the VM"
        );
    }
    assert!(
        c.lines().any(|l| l.trim() == "VM-EXIT 0"),
        "the in-VM test did not exit 0"
    );
}

// ---------------------------------------------------------------- inside the VM

struct Lab {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    home: PathBuf,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Lab {
    fn new() -> Lab {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_path_buf();
        Lab {
            home: dir.join("home"),
            dir,
            _dir: d,
        }
    }

    fn blueprint(&self, name: &str, script: &str, extra: &str) -> PathBuf {
        let p = self.dir.join(format!("{name}.yaml"));
        let yaml = format!(
            "apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: {name}\n  version: 1\nagent:\n  command: /bin/sh\n  args: ['-c', {}]\n{extra}",
            serde_json::to_string(script).unwrap()
        );
        std::fs::write(&p, yaml).unwrap();
        p
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("timeout");
        c.args(["-s", "KILL", "120", BIN])
            .args(args)
            .env("NEMOCLAW_HOME", &self.home)
            .stdin(Stdio::null());
        c
    }

    fn nc(&self, args: &[&str]) -> Out {
        let o = self.cmd(args).output().unwrap();
        use std::os::unix::process::ExitStatusExt;
        Out {
            code: o
                .status
                .code()
                .unwrap_or_else(|| 128 + o.status.signal().unwrap_or(0)),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    fn state(&self, name: &str) -> PathBuf {
        self.home.join("state").join(name)
    }
}

type R = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

fn group(name: &str) -> PathBuf {
    Path::new(CG).join("nemoclaw").join(name)
}

fn read(p: impl AsRef<Path>) -> String {
    std::fs::read_to_string(p.as_ref())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("<{}: {e}>", p.as_ref().display()))
}

fn pids(leaf: &Path) -> Vec<i32> {
    std::fs::read_to_string(leaf.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> R {
    let deadline = Instant::now() + timeout;
    while !f() {
        ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Subdirectories of `dir` (cgroups).
fn children(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn nothing_left(name: &str) -> R {
    ensure!(
        !group(name).exists(),
        "{} is left: {:?}",
        group(name).display(),
        children(&group(name))
    );
    Ok(())
}

fn check(name: &str, f: impl FnOnce() -> R) -> bool {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|p| Err(format!("panicked: {p:?}")));
    match r {
        Ok(()) => {
            println!("VM-PASS {name}");
            true
        }
        Err(e) => {
            println!("VM-FAIL {name}: {e}");
            false
        }
    }
}

#[test]
#[ignore = "runs inside the VM booted by pure_cgroup_v2_host_in_a_vm"]
fn in_vm_v2_checks() {
    assert!(
        std::env::var_os("NEMOCLAW_IN_VM").is_some(),
        "in_vm_v2_checks runs only inside the VM that pure_cgroup_v2_host_in_a_vm boots"
    );
    let mut ok = true;
    ok &= check("layout-is-pure-v2", layout_is_pure_v2);
    ok &= check_run();
    ok &= check("oom-kill", oom_kill);
    ok &= check("fork-bomb", fork_bomb);
    ok &= check_supervisor();
    ok &= check("two-sandboxes", two_sandboxes);
    assert!(ok, "some checks failed (see VM-FAIL lines)");
}

fn layout_is_pure_v2() -> R {
    use nemoclaw::sandbox::cgroups::{host_layout, Version};
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    ensure!(
        !mounts.lines().any(|l| l.contains(" - cgroup ")),
        "a cgroup v1 hierarchy is mounted: {mounts}"
    );
    let l = host_layout().map_err(|e| e.to_string())?;
    ensure!(l.hierarchies.len() == 3, "{l:?}");
    for (c, h) in &l.hierarchies {
        ensure!(
            h.version == Version::V2 && h.mount == Path::new(CG),
            "{c:?}: {h:?}"
        );
    }
    Ok(())
}

/// `nemoclaw run` with all three limits: the values while it runs, the placement, the cleanup.
fn check_run() -> bool {
    let lab = Lab::new();
    let name = "v2-run";
    let bp = lab.blueprint(
        name,
        "true",
        "resources:\n  memory: 64Mi\n  cpu: 0.5\n  pids: 48\n",
    );
    let child = lab
        .cmd(&[
            "run",
            bp.to_str().unwrap(),
            "--",
            "/bin/sh",
            "-c",
            "echo in; while [ ! -e /workspace/state/go ]; do sleep 0.05; done; echo out",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let leaf = group(name).join("sandbox");
    let placed = check("run-limits-and-placement", || {
        wait_for("the sandbox in its leaf", Duration::from_secs(60), || {
            !pids(&leaf).is_empty()
        })?;
        let want = [
            ("memory.max", (64u64 << 20).to_string()),
            ("memory.swap.max", "0".to_string()),
            ("cpu.max", "50000 100000".to_string()),
            ("pids.max", "48".to_string()),
        ];
        for (f, v) in want {
            ensure!(
                read(leaf.join(f)) == v,
                "{f} is {:?}, want {v:?}",
                read(leaf.join(f))
            );
        }
        // Below nemoclaw/<name>, never at the root; the root and the inner groups hold no
        // sandbox process.
        let root_procs = read(Path::new(CG).join("cgroup.procs"));
        for pid in pids(&leaf) {
            ensure!(
                !root_procs.lines().any(|l| l == pid.to_string()),
                "sandbox pid {pid} in the root cgroup"
            );
            let own = read(format!("/proc/{pid}/cgroup"));
            ensure!(
                own == format!("0::/nemoclaw/{name}/sandbox"),
                "pid {pid} is in {own:?}"
            );
        }
        ensure!(
            pids(&group(name)).is_empty(),
            "processes in the inner group"
        );
        ensure!(
            pids(&Path::new(CG).join("nemoclaw")).is_empty(),
            "processes in nemoclaw/"
        );
        let sub = read(group(name).join("cgroup.subtree_control"));
        for c in ["cpu", "memory", "pids"] {
            ensure!(
                sub.split_whitespace().any(|x| x == c),
                "subtree_control {sub:?}"
            );
        }
        Ok(())
    });
    std::fs::write(lab.state(name).join("go"), "").unwrap();
    let o = child.wait_with_output().unwrap();
    let left = check("run-leaves-nothing", || {
        ensure!(
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("out"),
            "run: {:?} {} {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        nothing_left(name)
    });
    placed && left
}

fn oom_kill() -> R {
    let lab = Lab::new();
    let bp = lab.blueprint("v2-memhog", "true", "resources:\n  memory: 64Mi\n");
    let o = lab.nc(&[
        "run",
        bp.to_str().unwrap(),
        "--",
        "/usr/bin/python3",
        "-c",
        "x = b'x' * (512 << 20)\nprint('allocated')",
    ]);
    ensure!(o.code == 137, "exit {}: {}{}", o.code, o.stdout, o.stderr);
    ensure!(!o.stdout.contains("allocated"), "{}", o.stdout);
    ensure!(o.stderr.contains("memory limit"), "{}", o.stderr);
    // The VM survived (we are still here) and can still start processes.
    ensure!(Command::new("true").status().unwrap().success(), "host");
    nothing_left("v2-memhog")
}

fn fork_bomb() -> R {
    let lab = Lab::new();
    let bp = lab.blueprint("v2-forkbomb", "true", "resources:\n  pids: 32\n");
    let script = "import os, sys, time\nok = fail = 0\nend = time.time() + 2\nwhile time.time() < end:\n    try:\n        pid = os.fork()\n        if pid == 0:\n            time.sleep(3); os._exit(0)\n        ok += 1\n    except OSError:\n        fail += 1\nprint(ok, fail)\nsys.stdout.flush()\nos._exit(0)";
    let start = Instant::now();
    let o = lab.nc(&[
        "run",
        bp.to_str().unwrap(),
        "--",
        "/usr/bin/python3",
        "-c",
        script,
    ]);
    let mut it = o.stdout.split_whitespace().map(|x| x.parse::<u32>());
    let (Some(Ok(ok)), Some(Ok(fail))) = (it.next(), it.next()) else {
        return Err(format!("exit {}: {}{}", o.code, o.stdout, o.stderr));
    };
    ensure!(ok < 32, "forked {ok} times");
    ensure!(fail > 0, "the pids limit was never hit");
    ensure!(
        start.elapsed() < Duration::from_secs(90),
        "took {:?}",
        start.elapsed()
    );
    nothing_left("v2-forkbomb")
}

const LOOP: &str =
    "echo started; trap 'echo got-term; exit 0' TERM; while true; do sleep 0.1; done";

fn start(lab: &Lab, name: &str, extra: &str) -> R {
    let bp = lab.blueprint(name, LOOP, extra);
    let o = lab.nc(&["start", bp.to_str().unwrap()]);
    ensure!(o.code == 0, "start {name}: {}{}", o.stdout, o.stderr);
    let leaf = group(name).join("sandbox");
    wait_for("the agent in its leaf", Duration::from_secs(60), || {
        !pids(&leaf).is_empty()
    })
}

fn stop(lab: &Lab, name: &str) -> R {
    let o = lab.nc(&["stop", name]);
    ensure!(o.code == 0, "stop {name}: {}{}", o.stdout, o.stderr);
    Ok(())
}

/// The supervisor in a leaf of its own, the agent in another, status from the cgroup, exec,
/// stop.
fn check_supervisor() -> bool {
    let lab = Lab::new();
    let name = "v2-sup";
    let started = check("supervisor-leaves", || {
        start(
            &lab,
            name,
            "lifecycle:\n  stopTimeout: 5s\nresources:\n  memory: 128Mi\n  cpu: 1\n",
        )?;
        let sup = pids(&group(name).join("supervisor"));
        ensure!(sup.len() == 1, "supervisor leaf holds {sup:?}");
        let cmdline = read(format!("/proc/{}/cmdline", sup[0]));
        ensure!(
            cmdline.contains("supervise") || cmdline.starts_with("nemoclaw-supervisor"),
            "{cmdline:?}"
        );
        let sb = group(name).join("sandbox");
        ensure!(
            read(sb.join("memory.max")) == (128u64 << 20).to_string(),
            "memory.max {}",
            read(sb.join("memory.max"))
        );
        ensure!(
            read(sb.join("cpu.max")) == "100000 100000",
            "cpu.max {}",
            read(sb.join("cpu.max"))
        );
        ensure!(
            pids(&group(name)).is_empty(),
            "processes in the inner group"
        );
        // The controllers were enabled below the supervisor's group although the supervisor
        // was already in its leaf (no EBUSY: the group itself holds no process).
        let sub = read(group(name).join("cgroup.subtree_control"));
        ensure!(sub == "cpu memory pids", "subtree_control {sub:?}");
        let log = read(lab.home.join(format!("logs/{name}/supervisor.jsonl")));
        ensure!(!log.contains("cgroup-leaf-failed"), "{log}");
        Ok(())
    });
    let status = started
        && check("supervisor-status", || {
            // Burn a little CPU in the sandbox so the usage is visible.
            let o = lab.nc(&[
                "exec",
                name,
                "--",
                "/bin/sh",
                "-c",
                "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done",
            ]);
            ensure!(o.code == 0, "exec: {}{}", o.stdout, o.stderr);
            // What `nemoclaw status` shows, from the supervisor's control socket.
            let home = nemoclaw::home::Home::at(&lab.home);
            let sock = home.control_socket(name);
            let s = Client::connect(&sock)
                .and_then(|mut c| c.request(Request::Status))
                .map_err(|e| format!("status: {e}"))?
                .status
                .ok_or("no status")?;
            ensure!(s.state == State::Running, "{s:?}");
            ensure!(
                s.memory_bytes.is_some_and(|m| m > 0),
                "no memory usage: {s:?}"
            );
            ensure!(s.cpu_percent.is_some(), "no cpu usage: {s:?}");
            println!(
                "status: memory {:?} bytes, cpu {:?}%",
                s.memory_bytes, s.cpu_percent
            );
            Ok(())
        });
    let exec = started
        && check("exec-joins-sandbox-leaf", || {
            let o = lab.nc(&["exec", name, "--", "/bin/cat", "/proc/self/cgroup"]);
            ensure!(o.code == 0, "exec: {}{}", o.stdout, o.stderr);
            // Its own cgroup namespace, rooted at the sandbox's leaf.
            ensure!(o.stdout.trim() == "0::/", "{}", o.stdout);
            Ok(())
        });
    let frozen = started
        && check("freeze-thaw-checkpoint", || {
            freeze_and_checkpoint(&lab, name)
        });
    let stopped = check("stop-leaves-nothing", || {
        stop(&lab, name)?;
        nothing_left(name)?;
        let log = read(lab.home.join(format!("logs/{name}/agent.log")));
        ensure!(log.contains("got-term"), "agent log: {log}");
        Ok(())
    });
    started && status && exec && frozen && stopped
}

/// v2 freezing: `cgroup.freeze` on the sandbox's leaf, settled in `cgroup.events`; thawed
/// again; and `nemoclaw checkpoint`, which freezes and thaws around its copy.
fn freeze_and_checkpoint(lab: &Lab, name: &str) -> R {
    use nemoclaw::sandbox::cgroups::{host_layout, SandboxCgroup};
    let cg = SandboxCgroup::locate(&host_layout().map_err(|e| e.to_string())?, name)
        .map_err(|e| e.to_string())?;
    let events = group(name).join("sandbox/cgroup.events");
    cg.freeze().map_err(|e| format!("freeze: {e}"))?;
    ensure!(read(&events).contains("frozen 1"), "{}", read(&events));
    cg.thaw().map_err(|e| format!("thaw: {e}"))?;
    ensure!(read(&events).contains("frozen 0"), "{}", read(&events));
    let o = lab.nc(&["checkpoint", name]);
    ensure!(
        o.code == 0 && o.stdout.contains("agent frozen for"),
        "checkpoint: {}{}",
        o.stdout,
        o.stderr
    );
    ensure!(read(&events).contains("frozen 0"), "{}", read(&events));
    Ok(())
}

fn two_sandboxes() -> R {
    let lab = Lab::new();
    start(&lab, "v2-side-a", "resources:\n  memory: 96Mi\n")?;
    start(&lab, "v2-side-b", "resources:\n  memory: 80Mi\n")?;
    let (a, b) = (
        group("v2-side-a").join("sandbox"),
        group("v2-side-b").join("sandbox"),
    );
    ensure!(
        read(a.join("memory.max")) == (96u64 << 20).to_string(),
        "a: {}",
        read(a.join("memory.max"))
    );
    ensure!(
        read(b.join("memory.max")) == (80u64 << 20).to_string(),
        "b: {}",
        read(b.join("memory.max"))
    );
    let (pa, pb) = (pids(&a), pids(&b));
    ensure!(
        pa.iter().all(|p| !pb.contains(p)),
        "shared pids {pa:?} {pb:?}"
    );
    stop(&lab, "v2-side-a")?;
    nothing_left("v2-side-a")?;
    ensure!(!pids(&b).is_empty(), "b went down with a");
    stop(&lab, "v2-side-b")?;
    nothing_left("v2-side-b")?;
    let left = children(&Path::new(CG).join("nemoclaw"));
    ensure!(left.is_empty(), "left under nemoclaw/: {left:?}");
    Ok(())
}
