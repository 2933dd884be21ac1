//! The lifecycle of one sandbox seen from the host: start its detached supervisor and wait for
//! the agent, stop it (SIGTERM, stop timeout, SIGKILL as a last resort), restart, reload its
//! policy, and remove what is left of it in `run/<name>/`. The reconciler and the CLI call
//! these; nothing here prints.
//!
//! A started sandbox runs from its deployed blueprint (`run/<name>/blueprint.yaml`), so it no
//! longer depends on the file or source checkout it was started from.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::client::Client;
use super::protocol::{Request, State, Status};
use super::{daemon, SupervisorError, SUPERVISE_ARG};
use crate::blueprint::diag::Diagnostic;
use crate::blueprint::set::{self, Entry};
use crate::blueprint::types::defaults;
use crate::home::{self, Home, HomeError};
use crate::plugin::registry::Plugin;
use crate::plugin::start as agent_start;
use crate::sandbox::instance::{self, InstanceError};

/// How often a waiting start or stop looks again.
const POLL: Duration = Duration::from_millis(10);
/// How long a stop waits beyond the stop timeout before it kills the supervisor.
const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("`{target}` is neither a blueprint file nor a known sandbox name (looked in {})", .looked_in.display())]
    UnknownTarget { target: String, looked_in: PathBuf },
    /// The blueprint does not load; the diagnostics say where and why.
    #[error("{}", .diagnostics.iter().map(|d| d.headline()).collect::<Vec<_>>().join("; "))]
    Blueprint { diagnostics: Vec<Diagnostic> },
    #[error("{}", .path.display())]
    Spec {
        path: PathBuf,
        #[source]
        source: InstanceError,
    },
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    #[error("the supervisor exited ({status}) before the sandbox started; see {}", .log.display())]
    SupervisorExited {
        status: std::process::ExitStatus,
        log: PathBuf,
    },
    #[error("sandbox `{name}` did not stay up: {message}; see {}", .log.display())]
    DidNotStayUp {
        name: String,
        message: String,
        log: PathBuf,
    },
    #[error("sandbox `{name}` is not running after {wait:?}; see {}", .logs.display())]
    NotRunningAfter {
        name: String,
        wait: Duration,
        logs: PathBuf,
    },
    #[error("sandbox `{name}` is not healthy: its health check (lifecycle.healthCheck) {how}; see {}", .log.display())]
    Unhealthy {
        name: String,
        how: String,
        log: PathBuf,
    },
    #[error("sandbox `{name}`: the supervisor (pid {holder}) does not stop")]
    DoesNotStop { name: String, holder: String },
    #[error("{0}")]
    ReloadRefused(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LaunchError {
    let what = what.into();
    move |source| LaunchError::Io { what, source }
}

/// What [`start`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    AlreadyRunning,
    /// The agent runs: the supervisor's pid and the sandbox init's host pid.
    Now {
        supervisor_pid: u32,
        pid: i32,
    },
}

/// What [`stop`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    WasNotRunning,
    Now,
}

/// Finds the blueprint file for `target`: a path, the home's `blueprints/<target>.yaml`, or the
/// deployed blueprint of the sandbox named `target`.
pub fn resolve(home: &Home, target: &str) -> Result<PathBuf, LaunchError> {
    let p = Path::new(target);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    [
        home.blueprints().join(format!("{target}.yaml")),
        home.deployed_blueprint(target),
    ]
    .into_iter()
    .find(|c| c.is_file())
    .ok_or_else(|| LaunchError::UnknownTarget {
        target: target.to_string(),
        looked_in: home.blueprints(),
    })
}

/// Loads one blueprint file, with every error it has.
pub fn load(path: &Path) -> Result<Entry, LaunchError> {
    set::load_one(path).map_err(|diagnostics| LaunchError::Blueprint { diagnostics })
}

/// Starts the sandbox of the loaded blueprint `entry` (read from `path`) under a detached
/// supervisor and waits up to `wait` for the agent to run. The host checks come first, so bad
/// input fails naming the field with nothing started.
pub fn start(
    home: &Home,
    entry: &Entry,
    path: &Path,
    plugin: &Plugin,
    wait: Duration,
) -> Result<Started, LaunchError> {
    let name = entry.blueprint.metadata.name.as_str();
    if super::is_running(home, name) {
        return Ok(Started::AlreadyRunning);
    }
    home::create_dir_private(&home.run_dir(name))?;
    let agent = agent_start::install_and_prepare(home, &entry.blueprint, plugin, &mut |_| {})
        .map_err(SupervisorError::from)?;
    instance::spec_for(home, &agent.blueprint, None, Some(&agent.launch)).map_err(|source| {
        LaunchError::Spec {
            path: path.to_path_buf(),
            source,
        }
    })?;
    deploy(home, name, entry, path)?;
    agent_start::save_deployed(home, name, plugin).map_err(SupervisorError::from)?;
    daemon::clean_leftovers(home, name)?;
    let child = spawn_supervisor(home, name)?;
    wait_running(home, name, child, wait)
}

/// Writes the deployed copy the supervisor runs from, unless `path` is that copy.
fn deploy(home: &Home, name: &str, entry: &Entry, path: &Path) -> Result<(), LaunchError> {
    let deployed = home.deployed_blueprint(name);
    if std::fs::canonicalize(path).ok() != std::fs::canonicalize(&deployed).ok() {
        home::write_atomic(&deployed, entry.text.as_bytes(), 0o600)?;
    }
    Ok(())
}

/// `nemoclaw __supervise NAME` in a session of its own, its stderr appended to the
/// supervisor log.
fn spawn_supervisor(home: &Home, name: &str) -> Result<Child, LaunchError> {
    home::create_dir_private(&home.logs(name))?;
    let log_path = home.supervisor_log(name);
    let sup_log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io(log_path.display().to_string()))?;
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg0("nemoclaw-supervisor")
        .arg(SUPERVISE_ARG)
        .arg(name)
        .env("NEMOCLAW_HOME", home.root())
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(sup_log));
    // SAFETY: the closure runs in the forked child before exec and only calls setsid(2), which
    // is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    cmd.spawn().map_err(io("cannot start the supervisor"))
}

/// Polls the control socket until the agent runs, fails, or `wait` passes.
fn wait_running(
    home: &Home,
    name: &str,
    mut child: Child,
    wait: Duration,
) -> Result<Started, LaunchError> {
    let deadline = Instant::now() + wait;
    let sock = home.control_socket(name);
    loop {
        if let Some(status) = child.try_wait().map_err(io("waiting for the supervisor"))? {
            return Err(LaunchError::SupervisorExited {
                status,
                log: home.supervisor_log(name),
            });
        }
        if let Some(s) = Client::connect(&sock)
            .ok()
            .and_then(|mut c| status_of(&mut c))
        {
            if let Some(done) = settled(home, name, s)? {
                return Ok(done);
            }
        }
        if Instant::now() > deadline {
            return Err(LaunchError::NotRunningAfter {
                name: name.to_string(),
                wait,
                logs: home.logs(name),
            });
        }
        std::thread::sleep(POLL);
    }
}

/// The deployed sandbox's health check: its blueprint's, else its plugin's.
fn deployed_health_check(home: &Home, name: &str) -> Option<crate::blueprint::HealthCheck> {
    let bp = set::load_one(&home.deployed_blueprint(name))
        .ok()?
        .blueprint;
    if bp.lifecycle.health_check.is_some() {
        return bp.lifecycle.health_check;
    }
    let plugin = agent_start::deployed(home, name, &bp).ok()?;
    plugin.manifest.health_check
}

/// Waits up to `wait` for the running sandbox `name` to pass its health check (at once when
/// it has none): the upgrade's health gate. Fails when the check fails, the agent goes down,
/// or `wait` passes first.
pub fn wait_healthy(home: &Home, name: &str, wait: Duration) -> Result<(), LaunchError> {
    let check = deployed_health_check(home, name);
    let has_check = check.is_some();
    // A check's start period is its owner's word on how long the agent takes to come up.
    let wait = check
        .and_then(|c| c.start_period)
        .map_or(wait, |p| wait.max(p.as_duration()));
    let deadline = Instant::now() + wait;
    let unhealthy = |how: String| LaunchError::Unhealthy {
        name: name.to_string(),
        how,
        log: home.agent_log(name),
    };
    loop {
        let status = Client::connect(&home.control_socket(name))
            .ok()
            .and_then(|mut c| status_of(&mut c));
        match status {
            Some(s) if s.state == State::Running && (!has_check || s.healthy == Some(true)) => {
                return Ok(())
            }
            Some(s) if s.healthy == Some(false) => return Err(unhealthy("fails".into())),
            Some(s) if matches!(s.state, State::Failed | State::Exited | State::Backoff) => {
                return Err(unhealthy(format!(
                    "never passed: the agent went down ({})",
                    s.message
                        .unwrap_or_else(|| format!("exit {}", s.last_exit.unwrap_or(-1)))
                )))
            }
            None if !super::is_running(home, name) => {
                return Err(unhealthy("never ran: the supervisor is gone".into()))
            }
            _ => {}
        }
        if Instant::now() > deadline {
            return Err(unhealthy(format!(
                "did not pass within {wait:?} (apply --wait)"
            )));
        }
        std::thread::sleep(POLL);
    }
}

fn status_of(c: &mut Client) -> Option<Status> {
    c.request(Request::Status).ok().and_then(|r| r.status)
}

/// `Some` once a starting sandbox has settled: running, or down with the reason.
fn settled(home: &Home, name: &str, s: Status) -> Result<Option<Started>, LaunchError> {
    match s.state {
        State::Running => Ok(Some(Started::Now {
            supervisor_pid: s.supervisor_pid,
            pid: s.pid.unwrap_or(0),
        })),
        State::Failed | State::Exited => Err(LaunchError::DidNotStayUp {
            name: name.to_string(),
            message: s
                .message
                .unwrap_or_else(|| format!("the agent exited with {}", s.last_exit.unwrap_or(-1))),
            log: home.agent_log(name),
        }),
        _ => Ok(None),
    }
}

/// The deployed blueprint's `lifecycle.stopTimeout` (the default when it cannot be read).
fn stop_timeout(home: &Home, name: &str) -> Duration {
    set::load_one(&home.deployed_blueprint(name))
        .ok()
        .and_then(|e| e.blueprint.lifecycle.stop_timeout.map(|d| d.as_duration()))
        .unwrap_or(defaults::STOP_TIMEOUT)
}

/// Stops the sandbox `name` and its supervisor (`timeout` overrides `lifecycle.stopTimeout`);
/// state, logs and the deployed blueprint are kept.
pub fn stop(home: &Home, name: &str, timeout: Option<Duration>) -> Result<Stopped, LaunchError> {
    if !super::is_running(home, name) {
        daemon::clean_leftovers(home, name)?;
        return Ok(Stopped::WasNotRunning);
    }
    let timeout = timeout.unwrap_or_else(|| stop_timeout(home, name));
    let asked = Client::connect(&home.control_socket(name)).and_then(|mut c| {
        c.request(Request::Stop {
            timeout_ms: Some(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)),
        })
    });
    let deadline = Instant::now() + timeout + STOP_GRACE;
    while super::is_running(home, name) {
        if Instant::now() > deadline || asked.is_err() {
            kill_supervisor(home, name)?;
            break;
        }
        std::thread::sleep(POLL);
    }
    daemon::clean_leftovers(home, name)?;
    Ok(Stopped::Now)
}

/// SIGKILL to a supervisor that does not answer or does not stop in time.
fn kill_supervisor(home: &Home, name: &str) -> Result<(), LaunchError> {
    // The lock is held, so the pid in the file is the live supervisor, not a reused pid.
    let (holder, _) = home::read_holder(&home.supervisor_pid(name));
    if let Ok(pid) = holder.parse::<i32>() {
        if super::is_running(home, name) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    if super::is_running(home, name) {
        return Err(LaunchError::DoesNotStop {
            name: name.to_string(),
            holder,
        });
    }
    Ok(())
}

/// Stops the sandbox, then starts it again from its deployed blueprint.
pub fn restart(home: &Home, name: &str, wait: Duration) -> Result<(Stopped, Started), LaunchError> {
    let stopped = stop(home, name, None)?;
    let path = home.deployed_blueprint(name);
    let entry = load(&path)?;
    let plugin =
        agent_start::deployed(home, name, &entry.blueprint).map_err(SupervisorError::from)?;
    Ok((stopped, start(home, &entry, &path, &plugin, wait)?))
}

/// Asks the running supervisor to apply its deployed blueprint's network, inference and
/// lifecycle policy without restarting the agent. A refused reload changes nothing.
pub fn reload(home: &Home, name: &str) -> Result<(), LaunchError> {
    let mut c = Client::connect(&home.control_socket(name))?;
    let r = c.request(Request::ReloadPolicy)?;
    if r.ok {
        Ok(())
    } else {
        Err(LaunchError::ReloadRefused(
            r.error.unwrap_or_else(|| "reload refused".into()),
        ))
    }
}

/// Removes `run/<name>/` (the deployed blueprint, pid file and socket; the caller removes the
/// inventory record first). The sandbox must be stopped.
pub fn remove_run_files(home: &Home, name: &str) {
    let run = home.run_dir(name);
    for f in home::RUN_FILES {
        let _ = std::fs::remove_file(run.join(f));
    }
    let _ = std::fs::remove_dir_all(home.deployed_plugins(name));
    let _ = std::fs::remove_file(home.agent_token(name));
    let _ = std::fs::remove_dir(&run);
}
