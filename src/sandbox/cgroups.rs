//! cgroup limits for a sandbox, on cgroup v1 (one hierarchy per controller), v2 (unified) and
//! hybrid hosts (v1 controllers plus a mostly empty v2 mount, like the CI machine).
//!
//! The pure core: [`limit_files`] says which file gets which value for each controller and
//! version, and [`parse_layout`] finds, from `/proc/self/mountinfo` and `/proc/self/cgroup`,
//! where each controller lives. The thin effectful shell ([`SandboxCgroup`]) creates
//! `<own cgroup>/nemoclaw/<name>` in each controller's hierarchy (never at a hierarchy root),
//! writes the limits, names the `cgroup.procs` files the sandbox writes itself into, and removes
//! it.
//!
//! The files are written directly rather than through cgroups-rs: cgroups-rs 0.5 detects the
//! version with a statfs of `/sys/fs/cgroup` only (it picks v1 on hybrid hosts but never looks
//! at which controllers the v2 mount holds), creates groups at the hierarchy roots unless given
//! relative paths, and pulls zbus (D-Bus) and a second nix into the build. The three
//! controllers we need are a handful of files.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup hierarchy offers the `{0}` controller on this host (needed for resources limits)")]
    NoController(&'static str),
    #[error("cgroup {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {value} to {path}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("cgroup {path} still has processes after {waited:?}; it was not removed")]
    Busy { path: PathBuf, waited: Duration },
    #[error("no cgroup freezer for this sandbox on this host (a cgroup v1 `freezer` hierarchy or cgroup v2 is needed to freeze it)")]
    NoFreezer,
    #[error("cgroup {path} was not {} after {waited:?}", if *.frozen { "frozen" } else { "thawed" })]
    FreezeTimeout {
        path: PathBuf,
        frozen: bool,
        waited: Duration,
    },
}

/// The limits of one sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CgroupLimits {
    /// CPU quota in thousandths of a core.
    pub cpu_millis: Option<u64>,
    /// Memory limit in bytes (swap off).
    pub memory: Option<u64>,
    /// Maximum number of tasks.
    pub pids: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Controller {
    Cpu,
    Memory,
    Pids,
    /// cgroup v1's freezer (checkpoints); optional. On v2 freezing is a core file
    /// (`cgroup.freeze`) of the unified group, so it is never listed for v2.
    Freezer,
}

impl Controller {
    /// The controllers every sandbox needs (its limits).
    pub const ALL: [Controller; 3] = [Controller::Cpu, Controller::Memory, Controller::Pids];
    pub fn name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Freezer => "freezer",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Version {
    V1,
    V2,
}

/// One limit: write `value` to `file` in the controller's cgroup directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitFile {
    pub controller: Controller,
    pub file: &'static str,
    pub value: String,
    /// Skipped when the file does not exist (e.g. `memory.memsw.*` without swap accounting).
    pub optional: bool,
}

/// The CFS period used for CPU quotas (100 ms).
pub const CPU_PERIOD_US: u64 = 100_000;

/// Which file gets which value, in the order they must be written. Pure.
pub fn limit_files(l: &CgroupLimits, v: Version) -> Vec<LimitFile> {
    let f = |controller, file, value: String, optional| LimitFile {
        controller,
        file,
        value,
        optional,
    };
    let mut out = Vec::new();
    let quota = l.cpu_millis.map(|m| (m * CPU_PERIOD_US / 1000).max(1000));
    match v {
        Version::V1 => {
            if let Some(q) = quota {
                out.push(f(
                    Controller::Cpu,
                    "cpu.cfs_period_us",
                    CPU_PERIOD_US.to_string(),
                    false,
                ));
                out.push(f(Controller::Cpu, "cpu.cfs_quota_us", q.to_string(), false));
            }
            if let Some(m) = l.memory {
                out.push(f(
                    Controller::Memory,
                    "memory.limit_in_bytes",
                    m.to_string(),
                    false,
                ));
                // memsw >= limit must hold, so it is written after the limit.
                out.push(f(
                    Controller::Memory,
                    "memory.memsw.limit_in_bytes",
                    m.to_string(),
                    true,
                ));
                out.push(f(Controller::Memory, "memory.swappiness", "0".into(), true));
            }
            out.push(f(Controller::Pids, "pids.max", l.pids.to_string(), false));
        }
        Version::V2 => {
            if let Some(q) = quota {
                out.push(f(
                    Controller::Cpu,
                    "cpu.max",
                    format!("{q} {CPU_PERIOD_US}"),
                    false,
                ));
            }
            if let Some(m) = l.memory {
                out.push(f(Controller::Memory, "memory.max", m.to_string(), false));
                out.push(f(Controller::Memory, "memory.swap.max", "0".into(), true));
            }
            out.push(f(Controller::Pids, "pids.max", l.pids.to_string(), false));
        }
    }
    out
}

/// Where one controller lives: its hierarchy's mount point, version, and this process's own
/// cgroup in it (relative to the mount).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hierarchy {
    pub version: Version,
    pub mount: PathBuf,
    /// This process's cgroup, relative to the hierarchy root, without a leading `/`.
    pub own: String,
}

/// For each controller, the hierarchy that offers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub hierarchies: Vec<(Controller, Hierarchy)>,
}

impl Layout {
    /// Whether every controller in [`Controller::ALL`] was found.
    fn has_all(&self) -> bool {
        Controller::ALL
            .iter()
            .all(|c| self.hierarchies.iter().any(|(x, _)| x == c))
    }
}

/// Finds the hierarchies from `/proc/self/mountinfo`, `/proc/self/cgroup` and the v2 mount's
/// `cgroup.controllers` (passed in, so this is pure). v1 wins for a controller bound to a v1
/// hierarchy (a controller is in at most one); otherwise v2 if it lists the controller. A v1
/// `freezer` hierarchy is listed too when mounted ([`Controller::Freezer`]).
pub fn parse_layout(mountinfo: &str, self_cgroup: &str, v2_controllers: Option<&str>) -> Layout {
    let mounts = CgroupMounts::parse(mountinfo);
    let own = OwnGroups::parse(self_cgroup);
    let mut hierarchies = Vec::new();
    for c in Controller::ALL {
        if let Some(h) = v1_hierarchy(&mounts, &own, c) {
            hierarchies.push((c, h));
        } else if let (Some((mnt, root)), Some(ctrls)) = (&mounts.v2, v2_controllers) {
            if ctrls.split_whitespace().any(|x| x == c.name()) {
                hierarchies.push((
                    c,
                    Hierarchy {
                        version: Version::V2,
                        mount: mnt.clone(),
                        own: relative(&own.v2, root),
                    },
                ));
            }
        }
    }
    if let Some(h) = v1_hierarchy(&mounts, &own, Controller::Freezer) {
        hierarchies.push((Controller::Freezer, h));
    }
    Layout { hierarchies }
}

/// The v1 hierarchy that offers controller `c`, with this process's group in it.
fn v1_hierarchy(mounts: &CgroupMounts, own: &OwnGroups, c: Controller) -> Option<Hierarchy> {
    let name = c.name().to_string();
    let (_, mnt, root) = mounts.v1.iter().find(|(o, _, _)| o.contains(&name))?;
    let own = own
        .v1
        .iter()
        .find(|(cs, _)| cs.contains(&name))
        .map(|(_, p)| p.as_str())
        .unwrap_or("/");
    Some(Hierarchy {
        version: Version::V1,
        mount: mnt.clone(),
        own: relative(own, root),
    })
}

/// The cgroup mounts in `/proc/self/mountinfo`.
struct CgroupMounts {
    /// Each v1 hierarchy: its mount options (the controllers among them), mount point, root.
    v1: Vec<(Vec<String>, PathBuf, String)>,
    /// The first cgroup2 mount: its mount point and root.
    v2: Option<(PathBuf, String)>,
}

impl CgroupMounts {
    fn parse(mountinfo: &str) -> CgroupMounts {
        let mut mounts = CgroupMounts {
            v1: Vec::new(),
            v2: None,
        };
        for line in mountinfo.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let pre: Vec<&str> = pre.split_whitespace().collect();
            let post: Vec<&str> = post.split_whitespace().collect();
            if pre.len() < 5 || post.len() < 3 {
                continue;
            }
            let (root, mnt) = (pre[3].to_string(), PathBuf::from(unescape(pre[4])));
            match post[0] {
                "cgroup" => {
                    let opts: Vec<String> = post[2].split(',').map(str::to_string).collect();
                    mounts.v1.push((opts, mnt, root));
                }
                "cgroup2" if mounts.v2.is_none() => mounts.v2 = Some((mnt, root)),
                _ => {}
            }
        }
        mounts
    }
}

/// This process's own groups, from `/proc/self/cgroup`.
struct OwnGroups {
    /// Each v1 hierarchy's controllers and our path in it.
    v1: Vec<(Vec<String>, String)>,
    /// Our path in the v2 hierarchy (`/` when there is none).
    v2: String,
}

impl OwnGroups {
    fn parse(self_cgroup: &str) -> OwnGroups {
        let mut own = OwnGroups {
            v1: Vec::new(),
            v2: String::from("/"),
        };
        for line in self_cgroup.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if ctrls.is_empty() {
                own.v2 = path.to_string();
            } else {
                let ctrls = ctrls.split(',').map(str::to_string).collect();
                own.v1.push((ctrls, path.to_string()));
            }
        }
        own
    }
}

/// `path` relative to a mount's `root`, without leading or trailing `/`.
fn relative(path: &str, root: &str) -> String {
    let p = if root != "/" {
        path.strip_prefix(root).unwrap_or(path)
    } else {
        path
    };
    p.trim_matches('/').to_string()
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The directory of sandbox `name` in a hierarchy: `<mount>/<own>/nemoclaw/<name>`.
///
/// v1 nests under this process's own group (v1 has no rule against processes in inner groups,
/// and the sandbox stays inside whatever limits its creator lives under). v2 forbids controllers
/// below a group that holds processes, and our own group always holds us, so on v2 the groups
/// hang below the hierarchy root instead, in `nemoclaw/<name>/` with two leaves: `sandbox`
/// (the agent) and `supervisor` (see [`supervisor_dir`]). Neither is ever the root itself.
pub fn sandbox_dir(h: &Hierarchy, name: &str) -> PathBuf {
    match h.version {
        Version::V1 => {
            let mut p = h.mount.clone();
            if !h.own.is_empty() {
                p.push(&h.own);
            }
            p.join("nemoclaw").join(name)
        }
        Version::V2 => h.mount.join("nemoclaw").join(name).join("sandbox"),
    }
}

/// v2 only: the leaf the supervisor of `name` moves itself into (none on v1).
pub fn supervisor_dir(h: &Hierarchy, name: &str) -> Option<PathBuf> {
    (h.version == Version::V2).then(|| h.mount.join("nemoclaw").join(name).join("supervisor"))
}

/// v2 only: the supervisor leaf of `name` on this layout.
pub fn supervisor_leaf(layout: &Layout, name: &str) -> Option<PathBuf> {
    layout
        .hierarchies
        .iter()
        .find_map(|(_, h)| supervisor_dir(h, name))
}

/// Moves the calling process into `leaf` (creating it).
pub fn join_leaf(leaf: &Path) -> Result<(), CgroupError> {
    fs::create_dir_all(leaf).map_err(io_at(leaf))?;
    let p = leaf.join("cgroup.procs");
    fs::write(&p, std::process::id().to_string()).map_err(|source| CgroupError::Write {
        path: p.clone(),
        value: std::process::id().to_string(),
        source,
    })
}

/// Reads this host's layout.
pub fn host_layout() -> Result<Layout, CgroupError> {
    let read = |p: &str| {
        fs::read_to_string(p).map_err(|source| CgroupError::Io {
            path: p.into(),
            source,
        })
    };
    let mountinfo = read("/proc/self/mountinfo")?;
    let own = read("/proc/self/cgroup")?;
    let first = parse_layout(&mountinfo, &own, None);
    // Only read the v2 controllers when some controller is still missing.
    if first.has_all() {
        return Ok(first);
    }
    let v2 = mountinfo
        .lines()
        .filter_map(|l| {
            l.split_once(" - ")
                .filter(|(_, post)| post.starts_with("cgroup2 "))
                .map(|(pre, _)| pre)
        })
        .filter_map(|pre| pre.split_whitespace().nth(4).map(unescape))
        .next();
    let ctrls = v2.and_then(|m| fs::read_to_string(Path::new(&m).join("cgroup.controllers")).ok());
    Ok(parse_layout(&mountinfo, &own, ctrls.as_deref()))
}

/// A sandbox's cgroup directories (one per controller), as created; recorded so `stop` and the
/// next `start` can remove them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxCgroup {
    pub dirs: Vec<(Controller, Version, PathBuf)>,
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl SandboxCgroup {
    /// The directories sandbox `name` uses on this layout (nothing is created).
    pub fn locate(layout: &Layout, name: &str) -> Result<SandboxCgroup, CgroupError> {
        let mut dirs = Vec::new();
        for c in Controller::ALL {
            let (_, h) = layout
                .hierarchies
                .iter()
                .find(|(x, _)| *x == c)
                .ok_or(CgroupError::NoController(c.name()))?;
            let d = sandbox_dir(h, name);
            if !dirs
                .iter()
                .any(|(_, _, x): &(Controller, Version, PathBuf)| *x == d)
            {
                dirs.push((c, h.version, d));
            }
        }
        // v1: the freezer too, when mounted (checkpoints freeze the sandbox with it).
        if let Some((_, h)) = layout
            .hierarchies
            .iter()
            .find(|(c, h)| *c == Controller::Freezer && h.version == Version::V1)
        {
            dirs.push((Controller::Freezer, Version::V1, sandbox_dir(h, name)));
        }
        Ok(SandboxCgroup { dirs })
    }

    /// The directory that holds controller `c`'s files: its own on v1; on v2 the one unified
    /// directory, which [`SandboxCgroup::locate`] records once (under the first controller).
    pub fn dir_for(&self, c: Controller) -> Option<(Version, &Path)> {
        self.dirs
            .iter()
            .find(|(x, _, _)| *x == c)
            .or_else(|| self.dirs.iter().find(|(_, v, _)| *v == Version::V2))
            .map(|(_, v, d)| (*v, d.as_path()))
    }

    /// Creates the groups (removing leftovers of an earlier run first) and writes the limits.
    /// On error, whatever was created is removed again.
    pub fn create(&self, limits: &CgroupLimits) -> Result<(), CgroupError> {
        self.remove()?;
        let result = self.create_inner(limits);
        if result.is_err() {
            let _ = self.remove();
        }
        result
    }

    fn create_inner(&self, limits: &CgroupLimits) -> Result<(), CgroupError> {
        for (c, v, dir) in &self.dirs {
            if *v == Version::V2 {
                enable_v2_controllers(dir)?;
            }
            match fs::create_dir_all(dir) {
                // The v1 freezer only serves checkpoints: a host where it cannot be used still
                // runs the sandbox, and a checkpoint says why it cannot freeze.
                Err(e) if *c == Controller::Freezer => {
                    tracing::warn!(
                        "no v1 freezer group {}: {e}; checkpoints of this sandbox will fail",
                        dir.display()
                    );
                }
                r => r.map_err(io_at(dir))?,
            }
        }
        for (c, v, dir) in &self.dirs {
            for lf in limit_files(limits, *v) {
                let belongs = lf.controller == *c || (*v == Version::V2);
                if !belongs {
                    continue;
                }
                let p = dir.join(lf.file);
                if lf.optional && !p.exists() {
                    continue;
                }
                fs::write(&p, &lf.value).map_err(|source| CgroupError::Write {
                    path: p.clone(),
                    value: lf.value.clone(),
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// The `cgroup.procs` file of each hierarchy's group (a sandbox's child writes itself in);
    /// call it after [`SandboxCgroup::create`]: a freezer group that could not be created is
    /// left out.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs
            .iter()
            .filter(|(c, _, dir)| *c != Controller::Freezer || dir.is_dir())
            .map(|(_, _, dir)| dir.join("cgroup.procs"))
            .collect()
    }

    /// Kills whatever is left in the groups and removes them. Missing groups are fine. A
    /// group left frozen (a supervisor killed during a checkpoint) is thawed first: frozen v1
    /// tasks do not die of SIGKILL until thawed.
    pub fn remove(&self) -> Result<(), CgroupError> {
        if let Some((v, dir)) = self.dir_for(Controller::Freezer) {
            if dir.exists() {
                let _ = set_frozen(v, dir, false);
            }
        }
        let result = self.remove_leaves();
        for (_, v, dir) in &self.dirs {
            if *v == Version::V2 {
                // `nemoclaw/<name>` goes once its supervisor leaf is gone too.
                if let Some(group) = dir.parent() {
                    let _ = fs::remove_dir(group);
                }
            }
        }
        result
    }

    fn remove_leaves(&self) -> Result<(), CgroupError> {
        for (_, _, dir) in &self.dirs {
            remove_group(dir)?;
        }
        Ok(())
    }

    /// Whether the memory controller recorded an OOM kill.
    pub fn oom_killed(&self) -> bool {
        self.dir_for(Controller::Memory).is_some_and(|(v, dir)| {
            let file = if v == Version::V1 {
                "memory.oom_control"
            } else {
                "memory.events"
            };
            fs::read_to_string(dir.join(file))
                .map(|s| oom_kill_count(&s) > 0)
                .unwrap_or(false)
        })
    }

    /// CPU time used by the processes in the group now (user and system, in seconds), plus
    /// what the reaped children of its init used: the same on cgroup v1 and v2, and without the
    /// cpuacct controller.
    pub fn cpu_seconds(&self, init: Option<i32>) -> Option<f64> {
        let (_, _, dir) = self.dirs.first()?;
        let procs = fs::read_to_string(dir.join("cgroup.procs")).ok()?;
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()??
            .max(1) as f64;
        let mut total = 0u64;
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let Some(f) = proc_stat_fields(pid) else {
                continue;
            };
            let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            // utime, stime (fields 14 and 15); for the init also cutime, cstime (16 and 17).
            total += field(11) + field(12);
            if Some(pid) == init {
                total += field(13) + field(14);
            }
        }
        Some(total as f64 / ticks)
    }

    /// Current memory usage in bytes, when readable.
    pub fn memory_usage(&self) -> Option<u64> {
        let (v, dir) = self.dir_for(Controller::Memory)?;
        let file = if v == Version::V1 {
            "memory.usage_in_bytes"
        } else {
            "memory.current"
        };
        fs::read_to_string(dir.join(file)).ok()?.trim().parse().ok()
    }
}

/// How long [`SandboxCgroup::freeze`] and [`SandboxCgroup::thaw`] wait for the kernel.
pub const FREEZE_WAIT: Duration = Duration::from_secs(5);

impl SandboxCgroup {
    /// Freezes every process of the sandbox (v2 `cgroup.freeze`, v1 `freezer.state`) and waits
    /// (up to [`FREEZE_WAIT`]) until the kernel reports the group frozen. On error the group
    /// is thawed again.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        let (v, dir) = self.freezer()?;
        let result = set_frozen(v, dir, true);
        if result.is_err() {
            let _ = set_frozen(v, dir, false);
        }
        result
    }

    /// Thaws the sandbox and waits (up to [`FREEZE_WAIT`]) until the kernel reports it thawed.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        let (v, dir) = self.freezer()?;
        set_frozen(v, dir, false)
    }

    /// The group whose freezer holds the sandbox: the v1 freezer's, or the unified v2 one.
    fn freezer(&self) -> Result<(Version, &Path), CgroupError> {
        self.dir_for(Controller::Freezer)
            .ok_or(CgroupError::NoFreezer)
    }
}

/// The files that freeze a group on each version: where to write, what, and where the kernel
/// says when it is done. Pure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreezeControl {
    /// Written with [`FreezeControl::value`].
    pub file: &'static str,
    /// Read until [`FreezeControl::settled`] says the group got there.
    pub state_file: &'static str,
    version: Version,
}

impl FreezeControl {
    pub fn of(version: Version) -> FreezeControl {
        let (file, state_file) = match version {
            Version::V1 => ("freezer.state", "freezer.state"),
            Version::V2 => ("cgroup.freeze", "cgroup.events"),
        };
        FreezeControl {
            file,
            state_file,
            version,
        }
    }

    /// What to write to [`FreezeControl::file`] to freeze (`true`) or thaw the group.
    pub fn value(&self, frozen: bool) -> &'static str {
        match (self.version, frozen) {
            (Version::V1, true) => "FROZEN",
            (Version::V1, false) => "THAWED",
            (Version::V2, true) => "1",
            (Version::V2, false) => "0",
        }
    }

    /// Whether `state` (the text of [`FreezeControl::state_file`]) says the group is frozen
    /// (`true`) or thawed, as asked. v1 reads `FREEZING` on the way.
    pub fn settled(&self, state: &str, frozen: bool) -> bool {
        match self.version {
            Version::V1 => state.trim() == self.value(frozen),
            Version::V2 => events_frozen(state) == Some(frozen),
        }
    }
}

/// The `frozen 0|1` line of a v2 `cgroup.events`.
pub fn events_frozen(events: &str) -> Option<bool> {
    events
        .lines()
        .find_map(|l| match l.trim().strip_prefix("frozen ")? {
            "1" => Some(true),
            "0" => Some(false),
            _ => None,
        })
}

/// Freezes or thaws the group in `dir` and waits until the kernel says it is done.
fn set_frozen(v: Version, dir: &Path, frozen: bool) -> Result<(), CgroupError> {
    let ctl = FreezeControl::of(v);
    let p = dir.join(ctl.file);
    let value = ctl.value(frozen);
    fs::write(&p, value).map_err(|source| CgroupError::Write {
        path: p.clone(),
        value: value.into(),
        source,
    })?;
    wait_settled(&ctl, dir, frozen)
}

/// Reads the group's freezer state until it settles, backing off from 200 µs to 50 ms between
/// reads, for at most [`FREEZE_WAIT`].
fn wait_settled(ctl: &FreezeControl, dir: &Path, frozen: bool) -> Result<(), CgroupError> {
    let state = dir.join(ctl.state_file);
    let start = Instant::now();
    loop {
        let text = fs::read_to_string(&state).map_err(io_at(&state))?;
        if ctl.settled(&text, frozen) {
            return Ok(());
        }
        if start.elapsed() >= FREEZE_WAIT {
            return Err(CgroupError::FreezeTimeout {
                path: dir.to_path_buf(),
                frozen,
                waited: start.elapsed(),
            });
        }
        let pause =
            (start.elapsed() / 4).clamp(Duration::from_micros(200), Duration::from_millis(50));
        std::thread::sleep(pause);
    }
}

/// The fields of `/proc/<pid>/stat` after the `(comm)` field: index 0 is field 3 (state).
fn proc_stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.get(stat.rfind(')')? + 2..)?;
    Some(after.split_whitespace().map(String::from).collect())
}

/// Removes group `dir`, killing whatever is still in it and waiting (up to 5 s) for it to
/// leave. A missing group is fine.
pub fn remove_group(dir: &Path) -> Result<(), CgroupError> {
    if !dir.exists() {
        return Ok(());
    }
    let start = Instant::now();
    loop {
        // Nested groups first (none are created, but a leftover could have them).
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    let _ = fs::remove_dir(e.path());
                }
            }
        }
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                for pid in pids_in(dir) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                if start.elapsed() > Duration::from_secs(5) {
                    return Err(CgroupError::Busy {
                        path: dir.to_path_buf(),
                        waited: start.elapsed(),
                    });
                }
                // Exiting tasks leave the group within microseconds; back off slowly.
                std::thread::sleep(Duration::from_micros(100).max(start.elapsed() / 4));
            }
            Err(e) => return Err(io_at(dir)(e)),
        }
    }
}

/// The `oom_kill N` count in `memory.oom_control` (v1) or `memory.events` (v2).
pub fn oom_kill_count(text: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("oom_kill ")
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The pids listed in a group's `cgroup.procs`.
pub fn pids_in(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// v2: makes cpu, memory and pids available from the hierarchy root down to the leaf's parent
/// (`<root>/nemoclaw/<name>`), creating the directories. None of these holds processes, so the
/// no-internal-processes rule is respected.
fn enable_v2_controllers(leaf: &Path) -> Result<(), CgroupError> {
    let Some(group) = leaf.parent() else {
        return Ok(());
    };
    let Some(nemoclaw) = group.parent() else {
        return Ok(());
    };
    let Some(root) = nemoclaw.parent() else {
        return Ok(());
    };
    fs::create_dir_all(group).map_err(io_at(group))?;
    for d in [root, nemoclaw, group] {
        let p = d.join("cgroup.subtree_control");
        let have = fs::read_to_string(&p).unwrap_or_default();
        for c in Controller::ALL {
            if have.split_whitespace().any(|x| x == c.name()) {
                continue;
            }
            let v = format!("+{}", c.name());
            fs::write(&p, &v).map_err(|source| CgroupError::Write {
                path: p.clone(),
                value: v.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
25 20 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
27 25 0:25 / /sys/fs/cgroup/cpu rw,relatime shared:11 - cgroup cgroup rw,cpu
28 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:12 - cgroup cgroup rw,memory
29 25 0:27 / /sys/fs/cgroup/pids rw,relatime shared:13 - cgroup cgroup rw,pids
30 25 0:28 / /sys/fs/cgroup/cpuacct rw,relatime shared:14 - cgroup cgroup rw,cpuacct
";
    const HYBRID_SELF: &str =
        "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n1:cpu:/\n0::/\n";

    const V2_MOUNTINFO: &str = "\
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
    const V2_SELF: &str = "0::/user.slice/user-1000.slice/session-3.scope\n";

    #[test]
    fn hybrid_host_uses_v1_for_every_controller() {
        let l = parse_layout(HYBRID_MOUNTINFO, HYBRID_SELF, Some("hugetlb"));
        assert_eq!(l.hierarchies.len(), 3);
        let mem = &l
            .hierarchies
            .iter()
            .find(|(c, _)| *c == Controller::Memory)
            .unwrap()
            .1;
        assert_eq!(mem.version, Version::V1);
        assert_eq!(mem.mount, PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(mem.own, "process_api/abc");
        assert_eq!(
            sandbox_dir(mem, "a"),
            PathBuf::from("/sys/fs/cgroup/memory/process_api/abc/nemoclaw/a")
        );
        let cpu = &l
            .hierarchies
            .iter()
            .find(|(c, _)| *c == Controller::Cpu)
            .unwrap()
            .1;
        assert_eq!(
            sandbox_dir(cpu, "a"),
            PathBuf::from("/sys/fs/cgroup/cpu/nemoclaw/a"),
            "never at the hierarchy root itself"
        );
        assert_eq!(
            supervisor_dir(cpu, "a"),
            None,
            "v1 allows processes in inner groups"
        );
        let cg = SandboxCgroup::locate(&l, "a").unwrap();
        assert_eq!(cg.dirs.len(), 3);
        assert_eq!(
            cg.dir_for(Controller::Memory),
            Some((
                Version::V1,
                Path::new("/sys/fs/cgroup/memory/process_api/abc/nemoclaw/a")
            ))
        );
    }

    #[test]
    fn unified_host_uses_leaves_below_the_root() {
        let l = parse_layout(
            V2_MOUNTINFO,
            V2_SELF,
            Some("cpuset cpu io memory hugetlb pids rdma misc"),
        );
        assert_eq!(l.hierarchies.len(), 3);
        for (_, h) in &l.hierarchies {
            assert_eq!(h.version, Version::V2);
            assert_eq!(h.own, "user.slice/user-1000.slice/session-3.scope");
            // Not under the populated session scope (v2 forbids it), not at the root itself.
            assert_eq!(
                sandbox_dir(h, "bot"),
                PathBuf::from("/sys/fs/cgroup/nemoclaw/bot/sandbox")
            );
            assert_eq!(
                supervisor_dir(h, "bot"),
                Some(PathBuf::from("/sys/fs/cgroup/nemoclaw/bot/supervisor"))
            );
        }
        let cg = SandboxCgroup::locate(&l, "bot").unwrap();
        assert_eq!(cg.dirs.len(), 1, "one directory on a unified host");
        // ... which serves every controller (memory usage and OOM kills are read there).
        let leaf = Path::new("/sys/fs/cgroup/nemoclaw/bot/sandbox");
        for c in Controller::ALL {
            assert_eq!(cg.dir_for(c), Some((Version::V2, leaf)), "{c:?}");
        }
    }

    #[test]
    fn a_v1_freezer_hierarchy_gets_a_group_of_its_own() {
        let mountinfo = format!(
            "{HYBRID_MOUNTINFO}31 25 0:29 / /sys/fs/cgroup/freezer rw,relatime shared:15 - cgroup cgroup rw,freezer\n"
        );
        let own = format!("6:freezer:/\n{HYBRID_SELF}");
        let l = parse_layout(&mountinfo, &own, None);
        assert_eq!(l.hierarchies.len(), 4);
        let cg = SandboxCgroup::locate(&l, "a").unwrap();
        assert_eq!(cg.dirs.len(), 4, "cpu, memory, pids and the freezer");
        let freezer = Path::new("/sys/fs/cgroup/freezer/nemoclaw/a");
        assert_eq!(
            cg.dir_for(Controller::Freezer),
            Some((Version::V1, freezer))
        );
        // Joined only once its group exists (a host whose freezer cannot be written still runs
        // sandboxes; tests/checkpoint.rs freezes a real one).
        assert_eq!(
            freezer.is_dir(),
            cg.procs_files().contains(&freezer.join("cgroup.procs"))
        );
        // Without one, a hybrid host has nothing to freeze with.
        let cg = SandboxCgroup::locate(&parse_layout(HYBRID_MOUNTINFO, HYBRID_SELF, None), "a");
        assert!(matches!(cg.unwrap().freeze(), Err(CgroupError::NoFreezer)));
    }

    #[test]
    fn v2_freezes_its_unified_group() {
        let l = parse_layout(V2_MOUNTINFO, V2_SELF, Some("cpu memory pids"));
        assert!(l.hierarchies.iter().all(|(c, _)| *c != Controller::Freezer));
        let cg = SandboxCgroup::locate(&l, "bot").unwrap();
        assert_eq!(
            cg.dir_for(Controller::Freezer),
            Some((
                Version::V2,
                Path::new("/sys/fs/cgroup/nemoclaw/bot/sandbox")
            ))
        );
    }

    #[test]
    fn freeze_files_per_version() {
        let v1 = FreezeControl::of(Version::V1);
        assert_eq!((v1.file, v1.state_file), ("freezer.state", "freezer.state"));
        assert_eq!((v1.value(true), v1.value(false)), ("FROZEN", "THAWED"));
        assert!(v1.settled("FROZEN\n", true));
        assert!(!v1.settled("FREEZING\n", true), "still on the way");
        assert!(!v1.settled("FROZEN\n", false));
        assert!(v1.settled("THAWED\n", false));
        let v2 = FreezeControl::of(Version::V2);
        assert_eq!((v2.file, v2.state_file), ("cgroup.freeze", "cgroup.events"));
        assert_eq!((v2.value(true), v2.value(false)), ("1", "0"));
        assert!(v2.settled("populated 1\nfrozen 1\n", true));
        assert!(!v2.settled("populated 1\nfrozen 0\n", true));
        assert!(v2.settled("populated 0\nfrozen 0\n", false));
        assert!(
            !v2.settled("populated 1\n", false),
            "no frozen line: not settled"
        );
    }

    #[test]
    fn cgroup_events_frozen_line() {
        assert_eq!(events_frozen("populated 1\nfrozen 1\n"), Some(true));
        assert_eq!(events_frozen("frozen 0"), Some(false));
        assert_eq!(events_frozen("populated 1\n"), None);
        assert_eq!(events_frozen("frozen 2\n"), None);
    }

    #[test]
    fn v2_without_controllers_is_reported() {
        let l = parse_layout(V2_MOUNTINFO, V2_SELF, Some("cpu io"));
        let err = SandboxCgroup::locate(&l, "x").unwrap_err();
        assert!(err.to_string().contains("memory"), "{err}");
    }

    #[test]
    fn v1_limit_files() {
        let l = CgroupLimits {
            cpu_millis: Some(500),
            memory: Some(256 << 20),
            pids: 64,
        };
        let f = limit_files(&l, Version::V1);
        let get = |name: &str| f.iter().find(|x| x.file == name).map(|x| x.value.clone());
        assert_eq!(get("cpu.cfs_quota_us").as_deref(), Some("50000"));
        assert_eq!(get("cpu.cfs_period_us").as_deref(), Some("100000"));
        assert_eq!(get("memory.limit_in_bytes").as_deref(), Some("268435456"));
        assert_eq!(
            get("memory.memsw.limit_in_bytes").as_deref(),
            Some("268435456")
        );
        assert_eq!(get("pids.max").as_deref(), Some("64"));
        let lim = f
            .iter()
            .position(|x| x.file == "memory.limit_in_bytes")
            .unwrap();
        let sw = f
            .iter()
            .position(|x| x.file == "memory.memsw.limit_in_bytes")
            .unwrap();
        assert!(lim < sw, "memsw must follow the memory limit");
    }

    #[test]
    fn v2_limit_files() {
        let l = CgroupLimits {
            cpu_millis: Some(1500),
            memory: Some(1 << 30),
            pids: 512,
        };
        let f = limit_files(&l, Version::V2);
        let get = |name: &str| f.iter().find(|x| x.file == name).map(|x| x.value.clone());
        assert_eq!(get("cpu.max").as_deref(), Some("150000 100000"));
        assert_eq!(get("memory.max").as_deref(), Some("1073741824"));
        assert_eq!(get("memory.swap.max").as_deref(), Some("0"));
        assert_eq!(get("pids.max").as_deref(), Some("512"));
        assert!(f.iter().all(|x| !x.file.contains("cfs")));
    }

    #[test]
    fn no_cpu_or_memory_means_only_pids() {
        let l = CgroupLimits {
            cpu_millis: None,
            memory: None,
            pids: 100,
        };
        for v in [Version::V1, Version::V2] {
            let f = limit_files(&l, v);
            assert_eq!(f.len(), 1);
            assert_eq!(f[0].file, "pids.max");
        }
    }

    #[test]
    fn oom_count_parses_both_formats() {
        assert_eq!(
            oom_kill_count("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            2
        );
        assert_eq!(
            oom_kill_count("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
            1
        );
        assert_eq!(oom_kill_count("oom_kill_disable 0\n"), 0);
    }
}
