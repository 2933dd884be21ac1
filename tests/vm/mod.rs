//! A throwaway Linux VM with a pure cgroup v2 hierarchy, for tests that must run on a kind of
//! host this machine is not (it has v1 controllers).
//!
//! - The kernel is Debian's `linux-image-amd64` (fetched once with `apt-get download` and
//!   unpacked with `dpkg-deb`, no postinst), cached under the cargo target directory.
//! - The initramfs (a newc cpio written here) holds busybox-static, `tests/vm/init.sh` as
//!   `/init`, and the `.ko` files for 9p, virtio, veth and nf_tables with their dependencies
//!   (read from each module's `.modinfo`, as the package ships no `modules.dep`).
//! - The host's root is shared read-only over 9p and becomes the VM's root, so the VM runs the
//!   host's nemoclaw, test binary, `nft`, `sh`, python. `/sys/fs/cgroup` is cgroup2 only
//!   (`cgroup_no_v1=all`), `/tmp` and `/run` are tmpfs.
//! - QEMU uses KVM when `/dev/kvm` opens and the CPU has vmx/svm, TCG otherwise (see [`accel`]);
//!   no network (`-nic none`).

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Modules the VM needs, in the order asked (dependencies are added before each).
pub const MODULES: &[&str] = &[
    // The host share.
    "virtio_pci",
    "9pnet_virtio",
    "9p",
    // The sandbox's sealed network: veth pair and the nftables fence.
    "veth",
    "crc32c_generic", // libcrc32c (nf_tables) looks up "crc32c" through the crypto API
    "nf_tables",
    "nft_ct",
    "nft_reject_inet",
    "nft_chain_nat",
    "nft_nat",
    "nft_masq",
    "nft_redir",
    "nft_limit",
    "nft_log",
    "nft_fib_inet",
];

fn cache_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cgroup-v2-vm");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(cmd: &mut Command) -> std::process::Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// `apt-get download PKG` into `dir` (running `apt-get update` once when the package lists are
/// missing, as on a fresh CI machine). Returns the `.deb`.
fn apt_download(pkg: &str, dir: &Path) -> PathBuf {
    let mut tried_update = false;
    loop {
        let o = run(Command::new("apt-get")
            .args(["download", "-q", pkg])
            .current_dir(dir));
        if o.status.success() {
            break;
        }
        assert!(
            !tried_update,
            "apt-get download {pkg} failed (the VM test needs Debian's package archive):\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        tried_update = true;
        let u = run(Command::new("apt-get").args(["update", "-qq"]));
        assert!(
            u.status.success(),
            "apt-get update failed: {}",
            String::from_utf8_lossy(&u.stderr)
        );
    }
    let prefix = format!("{pkg}_");
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.extension().is_some_and(|x| x == "deb")
                && p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&prefix)
        })
        .unwrap_or_else(|| panic!("apt-get download {pkg} left no .deb in {}", dir.display()))
}

fn deb_field(deb: &Path, field: &str) -> String {
    let o = run(Command::new("dpkg-deb").arg("-f").arg(deb).arg(field));
    assert!(o.status.success(), "dpkg-deb -f {} {field}", deb.display());
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

pub struct Kernel {
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>` (only the parts the VM may need are unpacked).
    pub modules: PathBuf,
    pub release: String,
}

/// The cached kernel, fetched and unpacked first when missing.
pub fn kernel() -> Kernel {
    let cache = cache_dir();
    let dir = cache.join("linux");
    if !dir.join("complete").exists() {
        let dl = cache.join("download");
        let _ = std::fs::remove_dir_all(&dl);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dl).unwrap();
        // The metapackage names the versioned image package.
        let meta = apt_download("linux-image-amd64", &dl);
        let depends = deb_field(&meta, "Depends");
        let image = depends
            .split([',', '|', ' '])
            .find(|w| w.starts_with("linux-image-"))
            .unwrap_or_else(|| panic!("linux-image-amd64 depends on {depends:?}"))
            .to_string();
        let deb = apt_download(&image, &dl);
        let partial = cache.join("linux.partial");
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(&partial).unwrap();
        let o = run(Command::new("sh")
            .arg("-c")
            .arg(
                "dpkg-deb --fsys-tarfile \"$1\" | tar -x -C \"$2\" --wildcards './boot/vmlinuz-*' \
             './lib/modules/*/kernel/fs' './lib/modules/*/kernel/net' './lib/modules/*/kernel/lib' \
             './lib/modules/*/kernel/crypto' './lib/modules/*/kernel/arch' \
             './lib/modules/*/kernel/drivers/virtio' './lib/modules/*/kernel/drivers/net/veth.ko'",
            )
            .arg("sh")
            .arg(&deb)
            .arg(&partial));
        assert!(
            o.status.success(),
            "unpacking {}: {}",
            deb.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        std::fs::write(partial.join("complete"), image).unwrap();
        std::fs::rename(&partial, &dir).unwrap();
        let _ = std::fs::remove_dir_all(&dl);
    }
    let boot: Vec<PathBuf> = std::fs::read_dir(dir.join("boot"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let vmlinuz = boot
        .into_iter()
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("vmlinuz-")
        })
        .expect("vmlinuz in the cached kernel");
    let release = vmlinuz.file_name().unwrap().to_string_lossy()["vmlinuz-".len()..].to_string();
    let modules = dir.join("lib/modules").join(&release);
    Kernel {
        vmlinuz,
        modules,
        release,
    }
}

/// The cached busybox-static binary, fetched first when missing.
pub fn busybox() -> PathBuf {
    let cache = cache_dir();
    let bin = cache.join("busybox");
    if !bin.exists() {
        let dl = cache.join("download-busybox");
        let _ = std::fs::remove_dir_all(&dl);
        std::fs::create_dir_all(&dl).unwrap();
        let deb = apt_download("busybox-static", &dl);
        let x = dl.join("x");
        let o = run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&x));
        assert!(o.status.success(), "dpkg-deb -x {}", deb.display());
        std::fs::copy(x.join("bin/busybox"), cache.join("busybox.partial")).unwrap();
        std::fs::rename(cache.join("busybox.partial"), &bin).unwrap();
        let _ = std::fs::remove_dir_all(&dl);
    }
    bin
}

/// A module's `name=value` entries from its `.modinfo` strings (e.g. `depends`). Pure.
pub fn modinfo(ko: &[u8], key: &str) -> Vec<String> {
    let needle = format!("{key}=");
    ko.split(|b| *b == 0)
        .filter_map(|s| s.strip_prefix(needle.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// The modules named by `depends=` and `softdep=pre:` of a module. Pure.
pub fn module_deps(ko: &[u8]) -> Vec<String> {
    let mut out: Vec<String> = modinfo(ko, "depends")
        .iter()
        .flat_map(|d| d.split(',').map(str::to_string).collect::<Vec<_>>())
        .filter(|d| !d.is_empty())
        .collect();
    for soft in modinfo(ko, "softdep") {
        // "pre: a b post: c"
        let mut pre = false;
        for w in soft.split_whitespace() {
            match w {
                "pre:" => pre = true,
                "post:" => pre = false,
                m if pre => out.push(m.to_string()),
                _ => {}
            }
        }
    }
    out
}

fn norm(name: &str) -> String {
    name.replace('-', "_")
}

/// The `.ko` files to load for `wanted`, dependencies first, each once. Soft dependencies that
/// are not modules here (built in, or an alias) are skipped; a wanted or hard dependency that
/// is missing fails.
pub fn module_closure(modules: &Path, wanted: &[&str]) -> Vec<PathBuf> {
    let mut by_name = BTreeMap::new();
    let mut stack = vec![modules.join("kernel")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(stem) = p
                .file_name()
                .unwrap()
                .to_str()
                .and_then(|n| n.strip_suffix(".ko"))
            {
                by_name.insert(norm(stem), p);
            }
        }
    }
    fn visit(
        name: &str,
        hard: bool,
        by_name: &BTreeMap<String, PathBuf>,
        seen: &mut HashSet<String>,
        out: &mut Vec<PathBuf>,
    ) {
        let n = norm(name);
        if !seen.insert(n.clone()) {
            return;
        }
        let Some(path) = by_name.get(&n) else {
            assert!(!hard, "kernel module {name} is not in the cached kernel");
            return;
        };
        let ko = std::fs::read(path).unwrap();
        let hard_deps = modinfo(&ko, "depends")
            .join(",")
            .split(',')
            .map(str::to_string)
            .collect::<HashSet<_>>();
        for d in module_deps(&ko) {
            visit(&d, hard_deps.contains(&d), by_name, seen, out);
        }
        out.push(path.clone());
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for w in wanted {
        visit(w, true, &by_name, &mut seen, &mut out);
    }
    out
}

/// A newc ("070701") cpio archive, as the kernel unpacks an initramfs.
#[derive(Default)]
pub struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            if mode & 0o170000 == 0o040000 { 2 } else { 1 },
            0, // mtime
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }
    fn pad(&mut self) {
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }
    pub fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, (0, 0), &[]);
    }
    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry(name, 0o100000 | mode, (0, 0), data);
    }
    pub fn char_dev(&mut self, name: &str, mode: u32, major: u32, minor: u32) {
        self.entry(name, 0o020000 | mode, (major, minor), &[]);
    }
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.buf
    }
}

/// Builds the initramfs: busybox, `/init`, the modules (and `/modules.order`, one path a line,
/// in load order) and `/vm.conf` (shell assignments the init sources).
pub fn initramfs(k: &Kernel, conf: &[(&str, String)]) -> PathBuf {
    let mut c = Cpio::default();
    for d in ["bin", "dev", "proc", "sys", "newroot", "modules"] {
        c.dir(d);
    }
    c.char_dev("dev/console", 0o600, 5, 1);
    c.file("bin/busybox", 0o755, &std::fs::read(busybox()).unwrap());
    c.file("init", 0o755, include_bytes!("init.sh"));
    let mut order = String::new();
    for ko in module_closure(&k.modules, MODULES) {
        let name = format!("modules/{}", ko.file_name().unwrap().to_string_lossy());
        c.file(&name, 0o644, &std::fs::read(&ko).unwrap());
        order.push_str(&format!("/{name}\n"));
    }
    c.file("modules.order", 0o644, order.as_bytes());
    let mut vmconf = String::new();
    for (k, v) in conf {
        assert!(!v.contains('\''), "{k}: no quotes in VM settings");
        vmconf.push_str(&format!("export {k}='{v}'\n"));
    }
    c.file("vm.conf", 0o644, vmconf.as_bytes());
    let out = cache_dir().join("initramfs.cpio");
    std::fs::write(&out, c.finish()).unwrap();
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

/// KVM when `/dev/kvm` opens and the CPU offers hardware virtualisation (`vmx` or `svm`), TCG
/// otherwise; with the reason. `NEMOCLAW_VM_ACCEL=kvm|tcg` forces one. A `/dev/kvm` without
/// vmx/svm is not enough: on a PVM host (`kvm_pvm`, e.g. some Firecracker guests) it only runs
/// PVM guest kernels, and Debian's kernel hangs there right after the real-mode setup.
pub fn accel() -> (Accel, String) {
    match std::env::var("NEMOCLAW_VM_ACCEL").as_deref() {
        Ok("kvm") => return (Accel::Kvm, "forced by NEMOCLAW_VM_ACCEL".into()),
        Ok("tcg") => return (Accel::Tcg, "forced by NEMOCLAW_VM_ACCEL".into()),
        _ => {}
    }
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return (Accel::Tcg, format!("/dev/kvm is not usable: {e}"));
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags"))
        .unwrap_or_default();
    if flags.split_whitespace().any(|f| f == "vmx" || f == "svm") {
        (Accel::Kvm, "/dev/kvm with vmx/svm".into())
    } else {
        (
            Accel::Tcg,
            "/dev/kvm is there but the CPU has no vmx/svm flag (a PVM-style /dev/kvm runs only PVM guest kernels)".into(),
        )
    }
}

const QEMU: &str = "qemu-system-x86_64";

/// Fails loudly when QEMU is missing.
pub fn require_qemu() {
    assert!(
        Command::new(QEMU)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
        "{QEMU} is needed to boot the cgroup v2 VM: run scripts/install-deps (Debian: apt-get install qemu-system-x86)"
    );
}

pub struct Boot {
    pub accel: Accel,
    /// Everything the VM printed on its serial console, and QEMU's own messages.
    pub console: String,
    pub wall: Duration,
    pub timed_out: bool,
}

/// Boots the VM and returns its console once it powers off (or is killed at `timeout`).
/// Console lines are echoed to stdout as they come (`--nocapture` shows them live).
pub fn boot(k: &Kernel, initrd: &Path, accel: Accel, timeout: Duration) -> Boot {
    let qemu = QEMU;
    require_qemu();
    let mut cmd = Command::new(qemu);
    match accel {
        Accel::Kvm => cmd.args(["-accel", "kvm", "-cpu", "host"]),
        Accel::Tcg => cmd.args(["-accel", "tcg", "-cpu", "max"]),
    };
    cmd.args(["-m", "1024", "-smp", "2", "-nodefaults", "-no-user-config"])
        .args([
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
            "-nic",
            "none",
        ])
        .arg("-kernel")
        .arg(&k.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args([
            "-append",
            "console=ttyS0 panic=-1 cgroup_no_v1=all quiet loglevel=4 8250.nr_uarts=1",
        ])
        .args([
            "-virtfs",
            "local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {qemu}: {e}"));
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let tx2 = tx.clone();
    let readers = [
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        }),
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx2.send(format!("qemu: {l}"));
            }
        }),
    ];
    let mut console = String::new();
    let mut timed_out = false;
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        match rx.recv_timeout(left.max(Duration::from_millis(1))) {
            Ok(l) => {
                let l = l.trim_end_matches('\r').to_string();
                println!("vm| {l}");
                let _ = std::io::stdout().flush();
                console.push_str(&l);
                console.push('\n');
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                let _ = child.kill();
                break;
            }
        }
    }
    let _ = child.wait();
    for r in readers {
        let _ = r.join();
    }
    Boot {
        accel,
        console,
        wall: start.elapsed(),
        timed_out,
    }
}
