//! Blueprint -> [`SandboxSpec`]: every mount, file, environment variable, id map, limit and the
//! command of one sandbox, computed by a pure function ([`build`]) so it can be reviewed and
//! tested without root. The effectful side ([`super::spawn`]) only carries the spec out.
//!
//! The host is consulted only through [`HostView`] (which system directories exist and which
//! are symlinks), probed once by [`HostView::probe`]; `instance::check_host` then verifies,
//! before anything is created, that every path the spec needs exists (bad input fails naming
//! the blueprint field, nothing half-built is left behind).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::blueprint::types::{defaults, Blueprint};
use crate::policy::INFERENCE_HOST;

use super::cgroups::CgroupLimits;

/// Where the nemoclaw binary is mounted (read-only) inside every sandbox.
pub const NEMOCLAW_BIN: &str = "/opt/nemoclaw/bin/nemoclaw";
/// Where the host state dir `state/<name>` is mounted read-write.
pub const STATE_PATH: &str = "/workspace/state";
/// First host uid/gid handed to sandboxes (2^20), far above any host user.
pub const HOST_ID_BASE: u32 = 1 << 20;
/// Ids per sandbox: inside ids 0..65536 map to `base..base+65536` on the host.
pub const IDS_PER_SANDBOX: u32 = 65536;
/// Smallest memory limit a sandbox may have (its init and a shell need a few MiB).
pub const MIN_MEMORY: u64 = 16 << 20;
/// Size of the read-only root tmpfs (holds /etc and the mount points only).
pub const ROOT_TMPFS_SIZE: u64 = 1 << 20;
/// PATH inside the sandbox.
pub const SANDBOX_PATH: &str =
    "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin:/opt/nemoclaw/bin";

/// The top-level system directories taken from the host (or from `filesystem.rootfs`).
pub const SYSTEM_DIRS: [&str; 7] = ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// A blueprint field holds a value the sandbox cannot use.
    #[error("{field}: {message}")]
    Field { field: String, message: String },
}

pub(crate) fn field_err(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError::Field {
        field: field.into(),
        message: message.into(),
    }
}

/// A contiguous id range on the host: inside id `i` is host id `base + i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub host_base: u32,
    pub count: u32,
}

impl IdRange {
    /// The `n`-th sandbox range (n from 0): `2^20 + n * 65536`.
    pub fn nth(n: u32) -> IdRange {
        IdRange {
            host_base: HOST_ID_BASE + n * IDS_PER_SANDBOX,
            count: IDS_PER_SANDBOX,
        }
    }
    /// The host id of inside id `inside`.
    pub fn host(&self, inside: u32) -> u32 {
        self.host_base + inside
    }
    /// The line written to `/proc/<pid>/uid_map` and `gid_map`.
    pub fn map_line(&self) -> String {
        format!("0 {} {}\n", self.host_base, self.count)
    }
}

/// What a top-level system path is on the host (or in the rootfs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEntry {
    Dir,
    Symlink(String),
}

/// The few facts about the host the spec depends on, probed by [`HostView::probe`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostView {
    /// `(name, entry)` for each of [`SYSTEM_DIRS`] that exists under the system root.
    pub system: Vec<(String, HostEntry)>,
    /// The host's `/etc/ssl/certs`, when it exists.
    pub ssl_certs: Option<PathBuf>,
    /// The host's `/etc/alternatives` (Debian's symlink farm behind awk, editor, ...).
    pub alternatives: Option<PathBuf>,
}

impl HostView {
    /// Looks at `root` (the host `/` or the blueprint's rootfs) and `/etc/ssl/certs`.
    pub fn probe(root: &Path) -> HostView {
        let mut system = Vec::new();
        for name in SYSTEM_DIRS {
            let p = root.join(name);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => {
                    if let Ok(t) = std::fs::read_link(&p) {
                        system.push((
                            name.to_string(),
                            HostEntry::Symlink(t.to_string_lossy().into_owned()),
                        ));
                    }
                }
                Ok(m) if m.is_dir() => system.push((name.to_string(), HostEntry::Dir)),
                _ => {}
            }
        }
        let certs = Path::new("/etc/ssl/certs");
        let alt = Path::new("/etc/alternatives");
        HostView {
            system,
            ssl_certs: certs.is_dir().then(|| certs.to_path_buf()),
            alternatives: alt.is_dir().then(|| alt.to_path_buf()),
        }
    }
}

/// Everything [`build`] needs besides the blueprint.
#[derive(Debug, Clone)]
pub struct SpecInput<'a> {
    pub blueprint: &'a Blueprint,
    /// Host state dir (`state/<name>`), mounted at [`STATE_PATH`].
    pub state_dir: &'a Path,
    /// The nemoclaw executable on the host, mounted at [`NEMOCLAW_BIN`].
    pub nemoclaw_exe: &'a Path,
    /// An empty host directory the sandbox root tmpfs is mounted on (in the sandbox's own mount
    /// namespace, so several sandboxes may share it).
    pub root_dir: &'a Path,
    /// The caller's home directory, for `~/` in `filesystem.mounts[].host`.
    pub user_home: Option<&'a Path>,
    /// The allocated host id range.
    pub ids: IdRange,
    pub host: &'a HostView,
    /// A command that replaces the blueprint's agent (`nemoclaw run BP -- CMD`).
    pub command: Option<Vec<String>>,
    /// Agent secrets already resolved on the host (`agent.secrets`), name -> value.
    pub secrets: BTreeMap<String, String>,
}

/// One mount, in the order it is made. `target` is the path inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub target: String,
    pub kind: MountKind,
    /// Which blueprint field asked for it (for error messages).
    pub origin: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// A bind mount of a host path (never recursive: submounts stay hidden); always nosuid and
    /// nodev.
    Bind {
        source: PathBuf,
        read_only: bool,
        file: bool,
    },
    /// A fresh tmpfs.
    Tmpfs { size: u64, mode: u32 },
    /// A new procfs for the sandbox's pid namespace.
    Proc,
    /// A new devpts instance.
    Devpts,
}

/// A file generated into the (then read-only) root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    pub path: String,
    pub contents: String,
    pub mode: u32,
}

/// Resource limits applied with setrlimit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimits {
    pub core: u64,
    pub nofile: u64,
}

/// The complete, reviewable description of one sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSpec {
    pub name: String,
    pub hostname: String,
    /// Host directory the root tmpfs is mounted on.
    pub root_dir: PathBuf,
    /// Directories created in the root before the mounts (mount points and plain dirs).
    pub dirs: Vec<String>,
    /// Symlinks `(link, target)` created in the root.
    pub symlinks: Vec<(String, String)>,
    pub files: Vec<FileSpec>,
    pub mounts: Vec<MountSpec>,
    pub uid_map: IdRange,
    pub gid_map: IdRange,
    /// The agent's uid and gid inside the sandbox.
    pub uid: u32,
    pub gid: u32,
    /// The agent's environment, built from scratch (nothing is inherited from the host).
    pub env: BTreeMap<String, String>,
    /// The command: argv[0] is a path or a name looked up in the sandbox's PATH.
    pub argv: Vec<String>,
    pub workdir: String,
    pub rlimits: Rlimits,
    pub cgroup: CgroupLimits,
    /// Extra syscall names to deny (`sandbox.seccomp.deny`), checked by the seccomp module.
    pub seccomp_deny: Vec<String>,
    /// Host state dir, owned by `uid_map.host(uid)`.
    pub state_dir: PathBuf,
    /// The field the command came from (`agent.command`, `agent.type` or `command`).
    pub command_origin: String,
}

impl SandboxSpec {
    /// The host uid and gid the agent runs as.
    pub fn host_uid(&self) -> u32 {
        self.uid_map.host(self.uid)
    }
    pub fn host_gid(&self) -> u32 {
        self.gid_map.host(self.gid)
    }

    /// Maps a path inside the sandbox to the host path backing it, through the bind mounts
    /// (longest target prefix wins). `None` when the path lies on a tmpfs or nowhere.
    pub fn host_path_of(&self, inside: &str) -> Option<PathBuf> {
        let mut best: Option<(&MountSpec, usize)> = None;
        for m in &self.mounts {
            let t = m.target.as_str();
            let hit = inside == t
                || (inside.starts_with(t) && inside.as_bytes().get(t.len()) == Some(&b'/'));
            if hit && best.is_none_or(|(_, l)| t.len() > l) {
                best = Some((m, t.len()));
            }
        }
        match best?.0 {
            MountSpec {
                kind: MountKind::Bind { source, .. },
                target,
                ..
            } => {
                let rest = inside[target.len()..].trim_start_matches('/');
                Some(if rest.is_empty() {
                    source.clone()
                } else {
                    source.join(rest)
                })
            }
            _ => None,
        }
    }

    /// Resolves the command's argv[0] the way execvp will inside the sandbox (through the
    /// symlinked system dirs and PATH) and returns the host path backing it, if any `exists`.
    pub fn resolve_command(&self, exists: impl Fn(&Path) -> bool) -> Option<PathBuf> {
        let arg0 = self.argv.first()?;
        let candidates: Vec<String> = if arg0.contains('/') {
            let abs = if arg0.starts_with('/') {
                arg0.clone()
            } else {
                format!("{}/{arg0}", self.workdir)
            };
            vec![abs]
        } else {
            let path = self
                .env
                .get("PATH")
                .map(String::as_str)
                .unwrap_or(SANDBOX_PATH);
            path.split(':')
                .filter(|d| d.starts_with('/'))
                .map(|d| format!("{}/{arg0}", d.trim_end_matches('/')))
                .collect()
        };
        candidates.iter().find_map(|c| {
            let inside = self.follow_root_symlinks(c);
            self.host_path_of(&inside).filter(|h| exists(h))
        })
    }

    /// Rewrites a leading component that is one of the root's symlinks (`/bin` -> `/usr/bin`).
    fn follow_root_symlinks(&self, inside: &str) -> String {
        for (link, target) in &self.symlinks {
            if let Some(rest) = inside.strip_prefix(link.as_str()) {
                if rest.starts_with('/') {
                    let t = if target.starts_with('/') {
                        target.clone()
                    } else {
                        format!("/{target}")
                    };
                    return format!("{t}{rest}");
                }
            }
        }
        inside.to_string()
    }
}

/// Builds the sandbox spec from the blueprint. Pure: no file system access.
pub fn build(input: &SpecInput<'_>) -> Result<SandboxSpec, SpecError> {
    let bp = input.blueprint;
    let name = bp.metadata.name.clone();
    check_name(&name)?;

    let uid = bp.sandbox.uid.unwrap_or(defaults::AGENT_UID);
    let gid = bp.sandbox.gid.unwrap_or(defaults::AGENT_GID);
    if uid == 0 || uid >= input.ids.count {
        return Err(field_err(
            "sandbox.uid",
            format!(
                "{uid} is not allowed: use a non-zero uid below {}",
                input.ids.count
            ),
        ));
    }
    if gid == 0 || gid >= input.ids.count {
        return Err(field_err(
            "sandbox.gid",
            format!(
                "{gid} is not allowed: use a non-zero gid below {}",
                input.ids.count
            ),
        ));
    }

    let memory = bp.resources.memory.map(|m| m.bytes());
    if let Some(m) = memory {
        if m < MIN_MEMORY {
            return Err(field_err(
                "resources.memory",
                format!(
                    "{} is below the {} MiB a sandbox needs at least",
                    bp.resources
                        .memory
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                    MIN_MEMORY >> 20
                ),
            ));
        }
    }
    let pids = bp.resources.pids.unwrap_or(defaults::PIDS);
    if pids < 4 {
        return Err(field_err(
            "resources.pids",
            format!("{pids} is too few: the sandbox's init and the agent need at least 4"),
        ));
    }
    let tmp_size = bp
        .sandbox
        .tmp_size
        .map(|s| s.bytes())
        .unwrap_or(defaults::TMP_SIZE);
    if tmp_size < 4096 {
        return Err(field_err("sandbox.tmpSize", "must be at least 4Ki"));
    }
    let nofile = bp.sandbox.nofile.unwrap_or(defaults::NOFILE);
    if !(16..=1 << 20).contains(&nofile) {
        return Err(field_err(
            "sandbox.nofile",
            format!("{nofile} is out of range: use 16 to 1048576"),
        ));
    }

    let workdir = bp
        .agent
        .workdir
        .clone()
        .unwrap_or_else(|| defaults::WORKDIR.to_string());
    check_inside_path(&workdir).map_err(|m| field_err("agent.workdir", m))?;

    let command_origin = match (&input.command, bp.agent.kind.as_deref()) {
        (Some(_), _) => "command",
        (None, Some("demo")) => "agent.type",
        _ => "agent.command",
    };
    let argv = match &input.command {
        Some(cmd) if !cmd.is_empty() => cmd.clone(),
        Some(_) => return Err(field_err("command", "the command is empty")),
        None => agent_argv(bp)?,
    };

    let mut dirs = Vec::new();
    let mut symlinks = Vec::new();
    let mut mounts = Vec::new();
    let bind =
        |target: &str, source: PathBuf, read_only: bool, file: bool, origin: &str| MountSpec {
            target: target.to_string(),
            kind: MountKind::Bind {
                source,
                read_only,
                file,
            },
            origin: origin.to_string(),
        };

    let sys_root = bp
        .filesystem
        .rootfs
        .as_deref()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    let sys_origin = if bp.filesystem.rootfs.is_some() {
        "filesystem.rootfs"
    } else {
        "host system directories"
    };
    if bp.filesystem.rootfs.is_some()
        && input
            .host
            .system
            .iter()
            .all(|(n, _)| n != "usr" && n != "bin")
    {
        return Err(field_err(
            "filesystem.rootfs",
            format!("{} has neither usr/ nor bin/", sys_root.display()),
        ));
    }
    for (dir, entry) in &input.host.system {
        let target = format!("/{dir}");
        match entry {
            HostEntry::Symlink(t) => symlinks.push((target, t.clone())),
            HostEntry::Dir => {
                mounts.push(bind(&target, sys_root.join(dir), true, false, sys_origin))
            }
        }
    }

    // /etc: generated, then the certificates read-only.
    let files = etc_files(&name, uid, gid);
    dirs.push("/etc".to_string());
    if let Some(certs) = &input.host.ssl_certs {
        mounts.push(bind(
            "/etc/ssl/certs",
            certs.clone(),
            true,
            false,
            "host /etc/ssl/certs",
        ));
    }
    if let Some(alt) = &input.host.alternatives {
        mounts.push(bind(
            "/etc/alternatives",
            alt.clone(),
            true,
            false,
            "host /etc/alternatives",
        ));
    }

    mounts.push(MountSpec {
        target: "/proc".into(),
        kind: MountKind::Proc,
        origin: "sandbox /proc".into(),
    });
    mounts.push(MountSpec {
        target: "/dev".into(),
        kind: MountKind::Tmpfs {
            size: 64 << 10,
            mode: 0o755,
        },
        origin: "sandbox /dev".into(),
    });
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        mounts.push(bind(
            &format!("/dev/{node}"),
            PathBuf::from(format!("/dev/{node}")),
            false,
            true,
            "sandbox /dev",
        ));
    }
    mounts.push(MountSpec {
        target: "/dev/pts".into(),
        kind: MountKind::Devpts,
        origin: "sandbox /dev".into(),
    });
    mounts.push(MountSpec {
        target: "/dev/shm".into(),
        kind: MountKind::Tmpfs {
            size: tmp_size,
            mode: 0o1777,
        },
        origin: "sandbox.tmpSize".into(),
    });
    mounts.push(MountSpec {
        target: "/tmp".into(),
        kind: MountKind::Tmpfs {
            size: tmp_size,
            mode: 0o1777,
        },
        origin: "sandbox.tmpSize".into(),
    });
    dirs.push("/workspace".to_string());
    mounts.push(bind(
        STATE_PATH,
        input.state_dir.to_path_buf(),
        false,
        false,
        "state directory",
    ));
    mounts.push(bind(
        NEMOCLAW_BIN,
        input.nemoclaw_exe.to_path_buf(),
        true,
        true,
        "nemoclaw binary",
    ));

    for (i, m) in bp.filesystem.mounts.iter().enumerate() {
        let field = format!("filesystem.mounts[{i}]");
        check_inside_path(&m.path).map_err(|e| field_err(format!("{field}.path"), e))?;
        check_mount_target(&m.path).map_err(|e| field_err(format!("{field}.path"), e))?;
        let host = expand_home(&m.host, input.user_home)
            .map_err(|e| field_err(format!("{field}.host"), e))?;
        mounts.push(bind(
            &m.path,
            host,
            m.read_only,
            false,
            &format!("{field}.host"),
        ));
    }

    let mut env = BTreeMap::new();
    for (k, v) in [
        ("PATH", SANDBOX_PATH),
        ("HOME", STATE_PATH),
        ("USER", "agent"),
        ("LOGNAME", "agent"),
        ("SHELL", "/bin/sh"),
        ("LANG", "C.UTF-8"),
        ("TERM", "dumb"),
        ("TMPDIR", "/tmp"),
        ("NEMOCLAW_STATE_DIR", STATE_PATH),
    ] {
        env.insert(k.to_string(), v.to_string());
    }
    env.insert("HOSTNAME".into(), name.clone());
    env.insert("NEMOCLAW_SANDBOX".into(), name.clone());
    if let Some(inference) = &bp.inference {
        env.extend(inference.agent_env());
    }
    for (k, v) in &bp.agent.env {
        check_env_name(k).map_err(|e| field_err(format!("agent.env.{k}"), e))?;
        env.insert(k.clone(), v.clone());
    }
    for (k, v) in &input.secrets {
        check_env_name(k).map_err(|e| field_err(format!("agent.secrets[{k}]"), e))?;
        env.insert(k.clone(), v.clone());
    }
    for (k, v) in &env {
        if v.contains('\0') {
            return Err(field_err(format!("agent.env.{k}"), "contains a NUL byte"));
        }
    }
    if argv.iter().any(|a| a.contains('\0')) {
        return Err(field_err("agent.command", "contains a NUL byte"));
    }

    for (i, d) in bp.sandbox.seccomp.deny.iter().enumerate() {
        if crate::policy::syscalls::number(d).is_none() {
            return Err(field_err(
                format!("sandbox.seccomp.deny[{i}]"),
                format!("`{d}` is not an x86_64 syscall name"),
            ));
        }
    }

    Ok(SandboxSpec {
        hostname: name.clone(),
        name,
        root_dir: input.root_dir.to_path_buf(),
        dirs,
        symlinks,
        files,
        mounts,
        uid_map: input.ids,
        gid_map: input.ids,
        uid,
        gid,
        env,
        argv,
        workdir,
        rlimits: Rlimits { core: 0, nofile },
        cgroup: CgroupLimits {
            cpu_millis: bp.resources.cpu.map(|c| c.millicores()),
            memory,
            pids,
        },
        seccomp_deny: bp.sandbox.seccomp.deny.clone(),
        state_dir: input.state_dir.to_path_buf(),
        command_origin: command_origin.to_string(),
    })
}

/// The blueprint's own agent command (when `run` gives none).
fn agent_argv(bp: &Blueprint) -> Result<Vec<String>, SpecError> {
    let kind = bp.agent.kind.as_deref().unwrap_or(defaults::AGENT_TYPE);
    let mut argv = match kind {
        "command" => match &bp.agent.command {
            Some(c) if !c.trim().is_empty() => vec![c.clone()],
            _ => {
                return Err(field_err(
                    "agent.command",
                    "`type: command` needs a command (the program to run inside the sandbox)",
                ))
            }
        },
        "demo" => vec![NEMOCLAW_BIN.to_string(), "demo-agent".to_string()],
        other => {
            if let Some(c) = &bp.agent.command {
                vec![c.clone()]
            } else {
                return Err(field_err(
                    "agent.type",
                    format!("agent type `{other}` needs its plugin, which this release cannot run yet: set agent.command, or pass a command after `--`"),
                ));
            }
        }
    };
    argv.extend(bp.agent.args.iter().cloned());
    Ok(argv)
}

fn check_name(name: &str) -> Result<(), SpecError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(field_err(
            "metadata.name",
            format!("`{name}` is not a DNS label (lower-case letters, digits, `-`, at most 63)"),
        ))
    }
}

fn check_env_name(k: &str) -> Result<(), String> {
    if k.is_empty() || k.contains('=') || k.contains('\0') {
        return Err("not a valid environment variable name".into());
    }
    Ok(())
}

/// An absolute, normalised path inside the sandbox (no `.`/`..`, no `//`).
fn check_inside_path(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!("`{p}` is not an absolute path"));
    }
    if p.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    let ok = Path::new(p)
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !ok || p.contains("//") || (p.len() > 1 && p.ends_with('/')) {
        return Err(format!(
            "`{p}` must be a normalised path (no `.`, `..` or repeated `/`)"
        ));
    }
    Ok(())
}

/// Blueprint mounts may not hide or nest into what the sandbox itself provides.
fn check_mount_target(p: &str) -> Result<(), String> {
    let under = |base: &str| p == base || p.starts_with(&format!("{base}/"));
    if p == "/" || p == "/etc" || p == "/tmp" || p == "/workspace" {
        return Err(format!("`{p}` cannot be replaced by a mount"));
    }
    for reserved in [
        "/proc",
        "/dev",
        "/opt/nemoclaw",
        STATE_PATH,
        "/etc/ssl/certs",
        "/etc/alternatives",
    ] {
        if under(reserved) {
            return Err(format!(
                "`{p}` is inside `{reserved}`, which the sandbox provides itself"
            ));
        }
    }
    for sys in SYSTEM_DIRS {
        if under(&format!("/{sys}")) {
            return Err(format!("`{p}` is inside the read-only system directory /{sys}: choose a path such as /data or /workspace/NAME"));
        }
    }
    Ok(())
}

fn expand_home(host: &str, home: Option<&Path>) -> Result<PathBuf, String> {
    let p = if let Some(rest) = host.strip_prefix("~/") {
        home.ok_or("`~/` needs a home directory ($HOME is not set)")?
            .join(rest)
    } else {
        PathBuf::from(host)
    };
    if !p.is_absolute() {
        return Err(format!("`{host}` is not an absolute path (or ~/...)"));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("`{host}` contains `..`"));
    }
    Ok(p)
}

/// The generated `/etc`: just enough for libc, DNS through the gateway and TLS.
fn etc_files(name: &str, uid: u32, gid: u32) -> Vec<FileSpec> {
    let f = |path: &str, contents: String| FileSpec {
        path: path.to_string(),
        contents,
        mode: 0o644,
    };
    vec![
        f(
            "/etc/passwd",
            format!("root:x:0:0:root:/nonexistent:/usr/sbin/nologin\nagent:x:{uid}:{gid}:nemoclaw agent:{STATE_PATH}:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
        ),
        f("/etc/group", format!("root:x:0:\nagent:x:{gid}:\nnogroup:x:65534:\n")),
        f("/etc/hosts", format!("127.0.0.1\tlocalhost {INFERENCE_HOST}\n::1\tlocalhost ip6-localhost\n127.0.1.1\t{name}\n")),
        f("/etc/resolv.conf", "nameserver 127.0.0.1\noptions edns0\n".to_string()),
        f("/etc/nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n".to_string()),
        f("/etc/hostname", format!("{name}\n")),
    ]
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
