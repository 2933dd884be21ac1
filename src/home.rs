//! The nemoclaw home (`$NEMOCLAW_HOME`, default `~/.nemoclaw`, mode 0700), atomic file writes
//! and advisory file locks. Every file nemoclaw persists goes through [`write_atomic`], so a
//! crash leaves either the old or the new content, never a torn file.
//!
//! ```text
//! blueprints/<name>.yaml   plugins/<name>/plugin.yaml   presets/<name>.yaml
//! credentials/<NAME>       state/<name>/                snapshots/<name>/<stamp>/
//! logs/<name>/             run/<name>/                  cache/
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error("cannot find the home directory: set $NEMOCLAW_HOME or $HOME")]
    NoHome,
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is locked by process {holder}{}; waited {waited:?} (try again later, or pass a longer --lock-timeout)", .what.as_deref().map(|w| format!(" ({w})")).unwrap_or_default())]
    Locked {
        path: PathBuf,
        holder: String,
        what: Option<String>,
        waited: Duration,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> HomeError + '_ {
    move |source| HomeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The subdirectories `init` creates.
pub const LAYOUT: [&str; 9] = [
    "blueprints",
    "plugins",
    "presets",
    "credentials",
    "state",
    "snapshots",
    "logs",
    "run",
    "cache",
];

/// File names inside `run/<name>/`: [`RUN_FILES`] are what `destroy` removes.
const RUN_BLUEPRINT: &str = "blueprint.yaml";
const RUN_SUPERVISOR_PID: &str = "supervisor.pid";
const RUN_CONTROL_SOCKET: &str = "control.sock";
const RUN_DEPLOYED_RECORD: &str = "deployed.json";
/// The run-directory files of a sandbox that `destroy` removes (the inventory record goes
/// through the inventory).
pub const RUN_FILES: [&str; 3] = [RUN_BLUEPRINT, RUN_SUPERVISOR_PID, RUN_CONTROL_SOCKET];
/// The log file names inside `logs/<name>/`.
pub const AGENT_LOG: &str = "agent.log";
pub const SUPERVISOR_LOG: &str = "supervisor.jsonl";
pub const INFERENCE_LOG: &str = "inference.jsonl";
pub const EGRESS_LOG: &str = "egress.jsonl";
/// Upgrades, rollbacks and what migration scripts printed, as JSON lines.
pub const UPGRADE_LOG: &str = "upgrade.jsonl";

/// A nemoclaw home directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    pub fn at(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    /// `$HOME/.nemoclaw`. (`$NEMOCLAW_HOME` is read by the CLI and passed to [`Home::at`].)
    pub fn default_location() -> Result<Home, HomeError> {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from);
        let home = match home {
            Some(h) => h,
            None => nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.dir)
                .ok_or(HomeError::NoHome)?,
        };
        Ok(Home::at(home.join(".nemoclaw")))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn blueprints(&self) -> PathBuf {
        self.root.join("blueprints")
    }
    pub fn plugins(&self) -> PathBuf {
        self.root.join("plugins")
    }
    pub fn presets(&self) -> PathBuf {
        self.root.join("presets")
    }
    pub fn credentials(&self) -> PathBuf {
        self.root.join("credentials")
    }
    pub fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }
    pub fn state(&self, name: &str) -> PathBuf {
        self.root.join("state").join(name)
    }
    pub fn snapshots(&self, name: &str) -> PathBuf {
        self.root.join("snapshots").join(name)
    }
    pub fn logs(&self, name: &str) -> PathBuf {
        self.root.join("logs").join(name)
    }
    /// `run/`: what nemoclaw keeps about running and deployed sandboxes (never agent data).
    pub fn run_root(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn run_dir(&self, name: &str) -> PathBuf {
        self.run_root().join(name)
    }
    /// The apply lock (`run/apply.lock`), held by apply, watch and the lifecycle commands.
    pub fn apply_lock(&self) -> PathBuf {
        self.run_root().join("apply.lock")
    }
    /// The inventory generation (`run/generation`).
    pub fn generation_file(&self) -> PathBuf {
        self.run_root().join("generation")
    }
    /// The table of per-sandbox host id ranges (`run/id-ranges.json`).
    pub fn id_ranges(&self) -> PathBuf {
        self.run_root().join("id-ranges.json")
    }
    /// The inventory record of a deployed sandbox (`run/<name>/deployed.json`).
    pub fn deployed_record(&self, name: &str) -> PathBuf {
        self.run_dir(name).join(RUN_DEPLOYED_RECORD)
    }
    /// The deployed blueprint the supervisor runs (`run/<name>/blueprint.yaml`).
    pub fn deployed_blueprint(&self, name: &str) -> PathBuf {
        self.run_dir(name).join(RUN_BLUEPRINT)
    }
    /// The supervisor's pid file; its lock held means the supervisor is alive.
    pub fn supervisor_pid(&self, name: &str) -> PathBuf {
        self.run_dir(name).join(RUN_SUPERVISOR_PID)
    }
    /// The supervisor's control socket.
    pub fn control_socket(&self, name: &str) -> PathBuf {
        self.run_dir(name).join(RUN_CONTROL_SOCKET)
    }
    /// The journal of an upgrade in progress (`run/<name>/upgrade.json`): present from the
    /// first step until commit or rollback, so a crash anywhere is finished on the next apply.
    pub fn upgrade_journal(&self, name: &str) -> PathBuf {
        self.run_dir(name).join("upgrade.json")
    }
    /// The upgrade log (`logs/<name>/upgrade.jsonl`).
    pub fn upgrade_log(&self, name: &str) -> PathBuf {
        self.logs(name).join(UPGRADE_LOG)
    }
    /// The inference router's daily budget, out of the agent's reach.
    pub fn inference_budget(&self, name: &str) -> PathBuf {
        self.run_dir(name).join("inference-budget.json")
    }
    /// The agent's plugin as deployed (`run/<name>/plugins/<type>/`, beside the deployed
    /// blueprint as in a source): the supervisor runs this copy, so it never depends on the
    /// source checkout or on a home plugin edited later.
    pub fn deployed_plugin(&self, name: &str, agent_type: &str) -> PathBuf {
        self.deployed_plugins(name).join(agent_type)
    }
    /// `run/<name>/plugins/`.
    pub fn deployed_plugins(&self, name: &str) -> PathBuf {
        self.run_dir(name).join("plugins")
    }
    /// The agent's own token (`run/<name>/agent-token`, 0600): made once, rendered into the
    /// agent's config by its plugin for the agent's local API (a dashboard's login).
    pub fn agent_token(&self, name: &str) -> PathBuf {
        self.run_dir(name).join("agent-token")
    }
    /// Where agent plugins install, one directory per plugin and version
    /// (`cache/agents/<plugin>/<version>/`); `NEMOCLAW_AGENT_CACHE` moves it, so several homes
    /// (or CI runs) share one install.
    pub fn agents_cache(&self) -> PathBuf {
        match std::env::var_os(AGENT_CACHE_ENV) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => self.cache().join("agents"),
        }
    }
    /// The sandbox's root filesystem mount point.
    pub fn sandbox_root(&self, name: &str) -> PathBuf {
        self.run_dir(name).join("root")
    }
    /// The agent's captured output (`logs/<name>/agent.log`).
    pub fn agent_log(&self, name: &str) -> PathBuf {
        self.logs(name).join(AGENT_LOG)
    }
    /// The supervisor's JSON event log (`logs/<name>/supervisor.jsonl`).
    pub fn supervisor_log(&self, name: &str) -> PathBuf {
        self.logs(name).join(SUPERVISOR_LOG)
    }

    /// Creates the home (0700) and its layout; existing directories are left as they are.
    pub fn ensure(&self) -> Result<(), HomeError> {
        create_dir_private(&self.root)?;
        for sub in LAYOUT {
            create_dir_private(&self.root.join(sub))?;
        }
        Ok(())
    }
}

/// The variable that moves [`Home::agents_cache`].
pub const AGENT_CACHE_ENV: &str = "NEMOCLAW_AGENT_CACHE";

/// Creates a directory (and parents) with mode 0700; an existing one is kept.
pub fn create_dir_private(path: &Path) -> Result<(), HomeError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io_err(path))
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory is written,
/// fsynced, given `mode`, renamed over `path`, and the directory is fsynced.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), HomeError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err(path))
}

/// An exclusive advisory lock (flock) on a file, released when dropped. The holder's pid and a
/// short description are written into the file so a waiting process can name them.
pub struct FileLock {
    path: PathBuf,
    _lock: Flock<File>,
}

impl std::fmt::Debug for FileLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileLock")
            .field("path", &self.path)
            .finish()
    }
}

impl FileLock {
    /// Takes the lock, waiting up to `timeout` (polling). `what` describes the holder's work
    /// (e.g. `nemoclaw apply`) for the message another process sees.
    pub fn acquire(path: &Path, what: &str, timeout: Duration) -> Result<FileLock, HomeError> {
        let start = Instant::now();
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .map_err(io_err(path))?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(mut lock) => {
                    let stamp = format!("{}\n{what}\n", std::process::id());
                    lock.set_len(0).map_err(io_err(path))?;
                    lock.seek(SeekFrom::Start(0)).map_err(io_err(path))?;
                    lock.write_all(stamp.as_bytes()).map_err(io_err(path))?;
                    lock.sync_data().map_err(io_err(path))?;
                    return Ok(FileLock {
                        path: path.to_path_buf(),
                        _lock: lock,
                    });
                }
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    if start.elapsed() >= timeout {
                        let (holder, what) = read_holder(path);
                        return Err(HomeError::Locked {
                            path: path.to_path_buf(),
                            holder,
                            what,
                            waited: start.elapsed(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err((_, e)) => return Err(io_err(path)(io::Error::from(e))),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads the pid and description a lock holder wrote.
pub fn read_holder(path: &Path) -> (String, Option<String>) {
    let mut s = String::new();
    let _ = File::open(path).and_then(|mut f| f.read_to_string(&mut s));
    let mut lines = s.lines();
    let pid = lines.next().unwrap_or("").trim().to_string();
    let what = lines.next().map(str::to_string).filter(|w| !w.is_empty());
    (
        if pid.is_empty() {
            "unknown".into()
        } else {
            pid
        },
        what,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn ensure_creates_private_layout() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("h"));
        home.ensure().unwrap();
        assert_eq!(
            fs::metadata(home.root()).unwrap().permissions().mode() & 0o777,
            0o700
        );
        for sub in LAYOUT {
            assert!(home.root().join(sub).is_dir(), "{sub}");
        }
        home.ensure().unwrap();
    }

    #[test]
    fn second_lock_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("apply.lock");
        let _held = FileLock::acquire(&p, "nemoclaw apply", Duration::from_secs(1)).unwrap();
        // flock locks belong to the open file description, so a second open in the same
        // process contends just like another process would.
        let err = FileLock::acquire(&p, "other", Duration::from_millis(100)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&std::process::id().to_string()), "{msg}");
        assert!(msg.contains("nemoclaw apply"), "{msg}");
    }
}
