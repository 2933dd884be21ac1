//! A plugin's install: once per plugin and version, into `cache/agents/<plugin>/<version>/`
//! ([`Home::agents_cache`]), by its `setup` script running in a sandbox of its own whose only
//! egress is the plugin's setup presets. The tree is built in `<version>.partial`, handed to
//! root (so no sandbox's uid owns it), marked with `.nemoclaw-install.json` and renamed into
//! place: a crash leaves either no install or a whole one. A lock per plugin and version makes
//! concurrent applies wait for one install instead of racing.
//!
//! The setup sandbox is a re-exec of nemoclaw (`nemoclaw __setup REQUEST`, see
//! [`SetupRequest`]) so its signal handling and namespaces never touch the caller's process;
//! its output is kept in `logs/<setup sandbox>/setup-<version>.log` and passed to `progress`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::blueprint::plugin::PluginManifest;
use crate::blueprint::types::Blueprint;
use crate::home::{write_atomic, FileLock, Home, HomeError};

/// The marker written last into a finished install.
pub const MARKER: &str = ".nemoclaw-install.json";
/// Prefix of setup sandboxes' names (`nemoclaw-setup-<plugin>`), reserved for them.
pub const SETUP_PREFIX: &str = "nemoclaw-setup-";
/// Address ranges (comma-separated CIDRs) a setup sandbox may reach although they are
/// private or reserved, beyond the addresses its presets' registries resolve to (which it may
/// always reach): a mirror the plugin's script is pointed at. Setup's domains are still only
/// its presets'.
pub const SETUP_ALLOW_ENV: &str = "NEMOCLAW_SETUP_ALLOW_ADDRESSES";
/// Default time a setup may take.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// How long an apply waits for another one's install of the same version.
const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);
/// Lines of the setup's output an error shows.
const TAIL_LINES: usize = 15;

/// What a setup sandbox runs (written by [`ensure`], read by `nemoclaw __setup`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetupRequest {
    pub plugin: String,
    pub version: String,
    pub package: Option<String>,
    pub script: String,
    pub egress: Vec<String>,
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// The host directory the script fills (bound at `AGENT_DIR`, writable).
    pub install_dir: PathBuf,
    /// Addresses the setup sandbox may reach although the SSRF guard refuses them
    /// ([`SETUP_ALLOW_ENV`]).
    #[serde(default)]
    pub allow_addresses: Vec<String>,
}

impl SetupRequest {
    /// The setup sandbox's name: `nemoclaw-setup-<plugin>-<8 hex>`, the hex from the install
    /// directory, so installs of two versions, or into two caches, never share a sandbox.
    pub fn sandbox_name(&self) -> String {
        let digest = Sha256::digest(self.install_dir.as_os_str().as_encoded_bytes());
        let tag = crate::migrate::tree::hex(&digest[..4]);
        let plugin: String = self
            .plugin
            .chars()
            .take(63 - SETUP_PREFIX.len() - 9)
            .collect();
        format!("{SETUP_PREFIX}{plugin}-{tag}")
    }
}

/// The marker's contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Marker {
    pub plugin: String,
    pub version: String,
    /// Hash of the setup step: a plugin whose setup changed installs again.
    pub setup_hash: String,
    pub seconds: f64,
}

/// Where an agent stands with its install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallState {
    /// The plugin installs nothing (`command`, `demo`).
    NotNeeded,
    Installed(PathBuf),
    /// Not installed yet, or installed by a different setup step.
    Needed {
        dir: PathBuf,
        reinstall: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("agent version `{version}` cannot name a directory: use letters, digits, `.`, `-`, `_` and `+`")]
    BadVersion { version: String },
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error("cannot run the setup sandbox")]
    Spawn(#[source] std::io::Error),
    #[error("{}", setup_failed(.what, .code, .tail, .egress))]
    Failed {
        /// `openclaw 9.9.9 (npm package `openclaw`)`.
        what: String,
        code: Option<i32>,
        tail: Vec<String>,
        egress: Vec<String>,
    },
    #[error("installing {what}: setup succeeded but did not create {creates}")]
    NotCreated { what: String, creates: String },
    #[error("installing {what}: setup took longer than {limit:?} and was stopped")]
    TimedOut { what: String, limit: Duration },
}

fn setup_failed(what: &str, code: &Option<i32>, tail: &[String], egress: &[String]) -> String {
    let how = code.map_or("was killed".to_string(), |c| format!("exited with {c}"));
    let presets = if egress.is_empty() {
        "no network at all (setup.egress is empty)".to_string()
    } else {
        let names: Vec<String> = egress.iter().map(|p| format!("`{p}`")).collect();
        format!("the network only through the preset {}", names.join(", "))
    };
    let mut s = format!("installing {what} failed: setup {how}. Setup reaches {presets}; check the version exists and that this host can reach that registry");
    if !tail.is_empty() {
        s.push_str(". Last lines:");
        for l in tail {
            s.push_str("\n    ");
            s.push_str(l);
        }
    }
    s
}

/// The version an agent installs: the blueprint's `agent.version`, else the package's default.
pub fn version_of(bp: &Blueprint, m: &PluginManifest) -> String {
    bp.agent
        .version
        .clone()
        .or_else(|| m.package.as_ref().map(|p| p.default_version.clone()))
        .unwrap_or_else(|| "0".into())
}

/// `openclaw 2026.9.6 (npm package `openclaw`)`.
pub fn describe(m: &PluginManifest, version: &str) -> String {
    match &m.package {
        Some(p) => format!(
            "{} {version} ({} package `{}`)",
            m.metadata.name,
            p.registry.preset(),
            p.name
        ),
        None => format!("{} {version}", m.metadata.name),
    }
}

/// The install directory of one version.
pub fn install_dir(home: &Home, plugin: &str, version: &str) -> Result<PathBuf, InstallError> {
    let ok = !version.is_empty()
        && !version.starts_with('.')
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_+".contains(c));
    if !ok {
        return Err(InstallError::BadVersion {
            version: version.into(),
        });
    }
    Ok(home.agents_cache().join(plugin).join(version))
}

/// Hash of everything in the manifest that decides what setup installs.
pub fn setup_hash(m: &PluginManifest) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(&(&m.package, &m.setup)).unwrap_or_default());
    crate::migrate::tree::hex(&h.finalize())
}

/// Whether the agent's install is there (reads the marker; creates nothing).
pub fn state(home: &Home, m: &PluginManifest, version: &str) -> Result<InstallState, InstallError> {
    if m.setup.is_none() {
        return Ok(InstallState::NotNeeded);
    }
    let dir = install_dir(home, &m.metadata.name, version)?;
    match read_marker(&dir) {
        Some(mk) if mk.setup_hash == setup_hash(m) => Ok(InstallState::Installed(dir)),
        Some(_) => Ok(InstallState::Needed {
            dir,
            reinstall: true,
        }),
        None => Ok(InstallState::Needed {
            dir,
            reinstall: false,
        }),
    }
}

fn read_marker(dir: &Path) -> Option<Marker> {
    let text = std::fs::read(dir.join(MARKER)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Installs the agent unless it is installed; returns the install directory (`None` for
/// plugins that install nothing). `progress` gets each line the setup prints.
pub fn ensure(
    home: &Home,
    m: &PluginManifest,
    version: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<Option<PathBuf>, InstallError> {
    let Some(setup) = &m.setup else {
        return Ok(None);
    };
    let dir = install_dir(home, &m.metadata.name, version)?;
    let parent = dir.parent().unwrap_or(&dir).to_path_buf();
    crate::home::create_dir_private(&parent)?;
    let _lock = FileLock::acquire(
        &parent.join(format!(".{version}.lock")),
        "installing an agent",
        LOCK_WAIT,
    )?;
    if let InstallState::Installed(d) = state(home, m, version)? {
        return Ok(Some(d));
    }
    let staging = parent.join(format!("{version}.partial"));
    remove_tree(&staging)?;
    crate::home::create_dir_private(&staging)?;
    let req = SetupRequest {
        plugin: m.metadata.name.clone(),
        version: version.into(),
        package: m.package.as_ref().map(|p| p.name.clone()),
        script: setup.script.clone(),
        egress: setup.egress.clone(),
        memory: setup.memory.map(|b| b.bytes()),
        install_dir: staging.clone(),
        allow_addresses: allowed_addresses(&setup.egress),
    };
    let started = Instant::now();
    let limit = setup.timeout.map_or(SETUP_TIMEOUT, |d| d.as_duration());
    run_setup(home, &req, &describe(m, version), limit, progress)?;
    let marker = Marker {
        plugin: req.plugin,
        version: version.into(),
        setup_hash: setup_hash(m),
        seconds: started.elapsed().as_secs_f64(),
    };
    finish(m, &staging, &dir, &marker)?;
    Ok(Some(dir))
}

/// Checks what setup made, hands it to root, readable by every agent, marks it and renames it
/// into place.
fn finish(
    m: &PluginManifest,
    staging: &Path,
    dir: &Path,
    marker: &Marker,
) -> Result<(), InstallError> {
    let creates = m.setup.as_ref().and_then(|s| s.creates.as_ref());
    if let Some(c) = creates {
        if std::fs::symlink_metadata(staging.join(c)).is_err() {
            return Err(InstallError::NotCreated {
                what: describe(m, &marker.version),
                creates: c.clone(),
            });
        }
    }
    give_to_root(staging)?;
    std::fs::set_permissions(staging, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|source| HomeError::Io {
            path: staging.to_path_buf(),
            source,
        })?;
    let json = serde_json::to_vec_pretty(marker).unwrap_or_default();
    write_atomic(&staging.join(MARKER), &json, 0o644)?;
    swap_into_place(staging, dir)
}

/// What the setup sandbox may reach although the SSRF guard would refuse it: the addresses the
/// host resolves its presets' registries to when they are private or reserved (an internal
/// mirror, or a proxy every name resolves to: the host's own network says so; loopback,
/// link-local and unspecified addresses are never among them), and [`SETUP_ALLOW_ENV`].
fn allowed_addresses(presets: &[String]) -> Vec<String> {
    use std::net::ToSocketAddrs;
    let mut out: Vec<String> = std::env::var(SETUP_ALLOW_ENV)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect();
    let hosts = presets
        .iter()
        .filter_map(|p| crate::policy::presets::builtin(p))
        .flatten()
        .filter(|d| !d.starts_with('*'));
    for host in hosts {
        for a in (*host, 443).to_socket_addrs().into_iter().flatten() {
            let ip = crate::policy::addr::canonical(a.ip());
            let never = ip.is_loopback()
                || ip.is_unspecified()
                || ip.is_multicast()
                || matches!(ip, std::net::IpAddr::V4(v4) if v4.is_link_local())
                || matches!(ip, std::net::IpAddr::V6(v6) if v6.is_unicast_link_local());
            let guarded = crate::policy::addr::special_purpose(ip).is_some();
            let cidr = if ip.is_ipv4() {
                format!("{ip}/32")
            } else {
                format!("{ip}/128")
            };
            if guarded && !never && !out.contains(&cidr) {
                out.push(cidr);
            }
        }
    }
    out
}

/// Runs `nemoclaw __setup` for `req`, streaming its output to the log and `progress`.
fn run_setup(
    home: &Home,
    req: &SetupRequest,
    what: &str,
    limit: Duration,
    progress: &mut dyn FnMut(&str),
) -> Result<(), InstallError> {
    let name = req.sandbox_name();
    let run = home.run_dir(&name);
    crate::home::create_dir_private(&run)?;
    let req_path = run.join("setup-request.json");
    write_atomic(
        &req_path,
        &serde_json::to_vec(req).unwrap_or_default(),
        0o600,
    )?;
    let logs = home.logs(&name);
    crate::home::create_dir_private(&logs)?;
    let log_path = logs.join(format!("setup-{}.log", req.version));
    let exe = std::env::current_exe().map_err(InstallError::Spawn)?;
    let mut child = Command::new(exe)
        .arg("__setup")
        .arg(&req_path)
        .env("NEMOCLAW_HOME", home.root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(InstallError::Spawn)?;
    let (tail, waited) = follow(&mut child, &log_path, limit, progress)?;
    let _ = std::fs::remove_file(&req_path);
    let _ = remove_tree(&home.state(&name));
    match waited {
        None => Err(InstallError::TimedOut {
            what: what.into(),
            limit,
        }),
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(InstallError::Failed {
            what: what.into(),
            code: status.code(),
            tail,
            egress: req.egress.clone(),
        }),
    }
}

/// Copies the child's output lines to the log and `progress` until it exits or `limit`
/// passes (then it is stopped: SIGTERM, which `__setup` forwards, then SIGKILL). Returns the
/// last lines and the exit status (`None` on timeout).
fn follow(
    child: &mut Child,
    log_path: &Path,
    limit: Duration,
    progress: &mut dyn FnMut(&str),
) -> Result<(Vec<String>, Option<std::process::ExitStatus>), InstallError> {
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    for pipe in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut log = std::fs::File::create(log_path).map_err(|source| HomeError::Io {
        path: log_path.into(),
        source,
    })?;
    let deadline = Instant::now() + limit;
    let mut tail: std::collections::VecDeque<String> = Default::default();
    let mut timed_out = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                use std::io::Write;
                let _ = writeln!(log, "{line}");
                progress(&line);
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() > deadline && !timed_out {
            timed_out = true;
            stop_child(child);
        }
    }
    let status = child.wait().map_err(InstallError::Spawn)?;
    Ok((tail.into(), (!timed_out).then_some(status)))
}

/// SIGTERM, then SIGKILL after 10 s.
fn stop_child(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
}

/// Hands the finished tree to root: no sandbox's uid owns a file of it afterwards.
fn give_to_root(dir: &Path) -> Result<(), InstallError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InstallError::Home(HomeError::Io { path, source })
    };
    std::os::unix::fs::lchown(dir, Some(0), Some(0)).map_err(err(dir))?;
    for entry in std::fs::read_dir(dir).map_err(err(dir))? {
        let entry = entry.map_err(err(dir))?;
        let path = entry.path();
        if entry.file_type().map_err(err(&path))?.is_dir() {
            give_to_root(&path)?;
        } else {
            std::os::unix::fs::lchown(&path, Some(0), Some(0)).map_err(err(&path))?;
        }
    }
    Ok(())
}

/// Renames the finished staging tree to `dir`; an older install there is moved aside first
/// and removed after.
fn swap_into_place(staging: &Path, dir: &Path) -> Result<(), InstallError> {
    let mut old = dir.as_os_str().to_owned();
    old.push(".old");
    let old = PathBuf::from(old);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InstallError::Home(HomeError::Io { path, source })
    };
    remove_tree(&old)?;
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(io(dir))?;
    }
    std::fs::rename(staging, dir).map_err(io(dir))?;
    remove_tree(&old)
}

fn remove_tree(p: &Path) -> Result<(), InstallError> {
    match std::fs::remove_dir_all(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(InstallError::Home(HomeError::Io {
                path: p.into(),
                source: e,
            }))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_name_one_directory_and_nothing_else() {
        let home = Home::at("/h");
        std::env::remove_var(crate::home::AGENT_CACHE_ENV);
        assert_eq!(
            install_dir(&home, "openclaw", "2026.9.6").unwrap(),
            PathBuf::from("/h/cache/agents/openclaw/2026.9.6")
        );
        for bad in ["", "..", ".hidden", "1.0/../../x", "1 0", "a\0b"] {
            assert!(install_dir(&home, "openclaw", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn setup_sandboxes_differ_by_install_and_stay_valid_names() {
        let req = |dir: &str, plugin: &str| SetupRequest {
            plugin: plugin.into(),
            version: "1".into(),
            package: None,
            script: String::new(),
            egress: vec![],
            memory: None,
            install_dir: dir.into(),
            allow_addresses: vec![],
        };
        let a = req("/h1/cache/agents/x/1.partial", "x").sandbox_name();
        let b = req("/h2/cache/agents/x/1.partial", "x").sandbox_name();
        assert_ne!(a, b);
        assert!(a.starts_with("nemoclaw-setup-x-"));
        let long = req("/h", &"p".repeat(60)).sandbox_name();
        assert!(long.len() <= 63, "{long}");
    }

    #[test]
    fn a_failed_setup_names_what_it_installed_and_the_presets_it_had() {
        let e = InstallError::Failed {
            what: "openclaw 9.9.9 (npm package `openclaw`)".into(),
            code: Some(1),
            tail: vec!["npm error notarget".into()],
            egress: vec!["npm".into()],
        }
        .to_string();
        assert!(
            e.starts_with(
                "installing openclaw 9.9.9 (npm package `openclaw`) failed: setup exited with 1"
            ),
            "{e}"
        );
        assert!(
            e.contains("the preset `npm`") && e.contains("npm error notarget"),
            "{e}"
        );
    }
}
