//! Helpers shared by the sandbox integration tests: a temporary nemoclaw home, blueprints, and
//! running commands through the real `nemoclaw run` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_nemoclaw");
pub const PY: &str = "/usr/bin/python3";

/// Fails loudly (never skips) when the suite is not run as root.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the sandbox tests create namespaces, cgroups and mounts for real: run them as root (e.g. sudo -E cargo test --test sandbox_escape)"
    );
}

pub struct Lab {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    fn from(o: Output) -> Out {
        use std::os::unix::process::ExitStatusExt;
        let code = o
            .status
            .code()
            .unwrap_or_else(|| 128 + o.status.signal().unwrap_or(0));
        Out {
            code,
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
    pub fn failed(&self) -> &Self {
        assert_ne!(
            self.code, 0,
            "expected failure\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
    pub fn has(&self, needle: &str) -> bool {
        self.stdout.contains(needle) || self.stderr.contains(needle)
    }
}

/// Runs a prepared command and captures its output.
pub fn from_cmd(c: &mut Command) -> Out {
    Out::from(
        c.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap(),
    )
}

impl Lab {
    pub fn new() -> Lab {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        Lab { dir, home }
    }

    /// Writes a blueprint named `name` with `extra` YAML appended (top-level keys).
    pub fn blueprint(&self, name: &str, extra: &str) -> PathBuf {
        let p = self.dir.path().join(format!("{name}.yaml"));
        let text = format!(
            "apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: {name}\n  version: 1\nagent:\n  command: /bin/sh\n{extra}"
        );
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn command(&self, bp: &Path, cmd: &[&str]) -> Command {
        let mut c = Command::new("timeout");
        c.args(["-s", "KILL", "90", BIN, "run"])
            .arg(bp)
            .arg("--")
            .args(cmd);
        c.env("NEMOCLAW_HOME", &self.home).stdin(Stdio::null());
        c
    }

    pub fn run(&self, bp: &Path, cmd: &[&str]) -> Out {
        Out::from(self.command(bp, cmd).output().unwrap())
    }

    pub fn sh(&self, bp: &Path, script: &str) -> Out {
        self.run(bp, &["/bin/sh", "-c", script])
    }

    /// Runs a Python script inside the sandbox; `PRELUDE` gives it `sc(nr, *args) -> errno`.
    pub fn py(&self, bp: &Path, script: &str) -> Out {
        let full = format!("{PRELUDE}\n{script}");
        self.run(bp, &[PY, "-c", &full])
    }

    pub fn state(&self, name: &str) -> PathBuf {
        self.home.join("state").join(name)
    }
}

pub const PRELUDE: &str = r#"
import ctypes, os, sys, errno, socket
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sc(nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    return 0 if r >= 0 else ctypes.get_errno()
"#;

/// The cgroup directories a sandbox named `name` would use on this host (any version).
pub fn cgroup_dirs(name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in walk("/sys/fs/cgroup", 6) {
        if entry.file_name().is_some_and(|n| n == name)
            && entry
                .parent()
                .and_then(|p| p.file_name())
                .is_some_and(|n| n == "nemoclaw")
        {
            out.push(entry);
        }
    }
    out
}

fn walk(root: &str, depth: usize) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![(PathBuf::from(root), 0)];
    while let Some((d, n)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.push(e.path());
                if n < depth {
                    stack.push((e.path(), n + 1));
                }
            }
        }
    }
    out
}

/// Host pids whose real uid lies in `[lo, hi)`.
pub fn pids_with_uid_in(lo: u32, hi: u32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next()?.parse::<u32>().ok());
        if uid.is_some_and(|u| u >= lo && u < hi) {
            out.push(pid);
        }
    }
    out
}

/// The host uid range recorded for `name` in this home.
pub fn id_range(home: &Path, name: &str) -> (u32, u32) {
    let t: std::collections::BTreeMap<String, u32> =
        serde_json::from_slice(&std::fs::read(home.join("run/id-ranges.json")).unwrap()).unwrap();
    let base = (1u32 << 20) + t[name] * 65536;
    (base, base + 65536)
}

/// Compiles a C program into `dir` and returns its path.
pub fn cc(dir: &Path, name: &str, src: &str) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, src).unwrap();
    let out = dir.join(name);
    let st = Command::new("gcc")
        .arg("-O0")
        .arg("-o")
        .arg(&out)
        .arg(&c)
        .status()
        .expect("gcc is needed for this test");
    assert!(st.success(), "gcc failed for {name}");
    out
}

/// Host pids whose cgroup (any hierarchy) is `.../nemoclaw/<name>`.
pub fn pids_in_cgroup_named(name: &str) -> Vec<i32> {
    let needle = format!("/nemoclaw/{name}\n");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::read_to_string(e.path().join("cgroup")).is_ok_and(|c| c.contains(&needle)) {
            out.push(pid);
        }
    }
    out
}

/// `nemoclaw ARGS` against the lab's home, killed after 60 s.
pub fn nc(lab: &Lab, args: &[&str]) -> Out {
    from_cmd(
        Command::new("timeout")
            .args(["-s", "KILL", "60", BIN])
            .args(args)
            .env("NEMOCLAW_HOME", &lab.home),
    )
}

/// Destroys the sandbox when dropped, so a failing test leaves no agent running (its home is a
/// temporary directory that goes away with it).
pub struct Destroy<'a>(pub &'a Lab, pub &'a str);

impl Drop for Destroy<'_> {
    fn drop(&mut self) {
        let _ = nc(self.0, &["destroy", self.1, "--delete-state"]);
    }
}

/// The status a sandbox's supervisor reports on its control socket.
pub fn status(lab: &Lab, name: &str) -> Option<nemoclaw::supervisor::protocol::Status> {
    use nemoclaw::supervisor::{client::Client, protocol::Request};
    let home = nemoclaw::home::Home::at(&lab.home);
    let mut c = Client::connect(&home.control_socket(name)).ok()?;
    c.request(Request::Status).ok()?.status
}

/// Polls `f` every 20 ms until it holds; fails the test after `timeout`.
pub fn wait_for(what: &str, timeout: std::time::Duration, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
