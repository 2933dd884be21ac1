//! The spec's data: the id range, the input of [`super::build`], mounts, files, limits and the
//! [`SandboxSpec`] itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::blueprint::types::Blueprint;
use crate::sandbox::cgroups::CgroupLimits;

use super::{HostView, HOST_ID_BASE, IDS_PER_SANDBOX};

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

/// Everything [`super::build`] needs besides the blueprint.
#[derive(Debug, Clone)]
pub struct SpecInput<'a> {
    pub blueprint: &'a Blueprint,
    /// Host state dir (`state/<name>`), mounted at [`super::STATE_PATH`].
    pub state_dir: &'a Path,
    /// The nemoclaw executable on the host, mounted at [`super::NEMOCLAW_BIN`].
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
    /// What the agent's plugin adds: its install directory, command, environment and `PATH`.
    pub agent: Option<&'a AgentLaunch>,
}

/// What an agent's plugin adds to a sandbox, resolved on the host by `plugin`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentLaunch {
    /// The agent type (for error messages: `agent.type` `openclaw`).
    pub kind: String,
    /// The command; empty means the blueprint's `agent.command` (the `command` plugin).
    pub argv: Vec<String>,
    /// Variables set before the blueprint's `agent.env` (which wins).
    pub env: BTreeMap<String, String>,
    /// Directories inside the sandbox put first on `PATH`.
    pub path: Vec<String>,
    /// The host directory bound at [`super::AGENT_DIR`], if the plugin installs anything.
    pub install: Option<PathBuf>,
    /// Bound read-write (only the setup sandbox); read-only otherwise.
    pub install_writable: bool,
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
    /// The command: `argv[0]` is a path or a name looked up in the sandbox's PATH.
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
}
