//! The supervisor process (`nemoclaw __supervise NAME`, started detached by `nemoclaw start`).
//!
//! Poll-driven on its main thread (a few MB resident). It is not single-threaded: the gateway
//! (network policy, inference) runs on its own tokio runtime in this process, and http health
//! probes run on short-lived threads. So nothing here forks to run Rust code: the sandbox and
//! exec checks are cloned/forked children that only make raw syscalls before they exec.
//!
//! It holds the exclusive lock on `run/<name>/supervisor.pid` for its whole life, so "the lock is
//! held" means "the supervisor is alive", whatever pid the file names after a crash or a reboot.
//! It starts the sandbox from the deployed blueprint (`run/<name>/blueprint.yaml`), copies the
//! agent's output into `logs/<name>/agent.log` (capped), restarts the agent per the lifecycle
//! policy with exponential backoff, watches the state dir's size against `resources.disk`, takes
//! checkpoints of the state (`lifecycle.checkpoint`, restored once after a crash loop with
//! `lifecycle.restoreOnCrashLoop`), and answers the control socket.
//!
//! The same loop (`Daemon::supervise`) runs `nemoclaw run` in the foreground
//! ([`run_foreground`]): one start, the output to the caller's stdout and stderr, the signals
//! passed on, no control socket.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::checkpoint::{CheckpointError, Checkpoints, Taken};
use super::foreground::{copy_stdin, read_into_spare, Foreground};
use super::gateway::GatewayHook;
use super::health;
use super::logcap::{CappedLog, AGENT_LOG_CAP};
use super::pidlock::PidLock;
use super::policy::{Decision, Policy, Tracker};
use super::protocol::{self, ExecInfo, Request, Response, State, Status, PROTOCOL_VERSION};
use super::SupervisorError;
use crate::blueprint::types::Blueprint;
use crate::home::Home;
use crate::observe::logging;
use crate::plugin::launch::{Prepared, StopPlan};
use crate::sandbox::cgroups::{self, SandboxCgroup};
use crate::sandbox::enter::Target;
use crate::sandbox::spawn::SpawnError;
use crate::sandbox::{
    instance, spawn, LoopbackOnly, NetworkSetup, Sandbox, SandboxSpec, SpawnOptions, Stdio,
};

/// How often the state dir's size is checked against `resources.disk`.
const DISK_CHECK: Duration = Duration::from_secs(3);

struct Client {
    stream: UnixStream,
    buf: Vec<u8>,
    greeted: bool,
    /// Readable after the last poll.
    ready: bool,
}

struct Daemon {
    name: String,
    bp_path: PathBuf,
    spec: SandboxSpec,
    disk_cap: Option<u64>,
    policy: Policy,
    tracker: Tracker,
    sandbox: Option<Sandbox>,
    /// The pipes of the running agent's output.
    outputs: Vec<Output>,
    /// Read buffer for `outputs` (never zeroed: only what the kernel writes is touched).
    buf: Vec<u8>,
    mode: Mode,
    /// The spawn options of every start.
    opts: SpawnOptions,
    /// Why the sandbox could not start (a foreground run returns it).
    start_error: Option<SpawnError>,
    /// Whether the last exit was a kill for reaching `resources.memory`.
    last_oom: bool,
    state: State,
    message: Option<String>,
    restarts: u32,
    last_exit: Option<i32>,
    next_start: Option<Instant>,
    stop_deadline: Option<Instant>,
    exit_when_down: bool,
    /// The state to settle in when the agent goes down (instead of the restart policy).
    down_state: Option<State>,
    /// The network set-up hook run for every (re)start of the sandbox.
    net: Box<dyn NetworkSetup>,
    health: Option<health::Check>,
    health_state: health::HealthState,
    health_run: Option<health::Running>,
    next_health: Option<Instant>,
    started_at: Instant,
    next_disk_check: Instant,
    /// Checkpoints of the state (a detached supervisor only).
    checkpoints: Option<Checkpoints>,
    /// How the agent's plugin stops it.
    stop: StopPlan,
    /// Whether start-up's pages were given back ([`super::memory`]), after the first start.
    trimmed: bool,
    /// The home (a detached supervisor): a reload loads the deployed blueprint and its plugin
    /// again from it.
    home: Option<Home>,
}

/// How the loop runs its sandbox.
enum Mode {
    /// The detached supervisor (`nemoclaw start`): the agent's output into the capped
    /// `agent.log`, restarts per the lifecycle policy, SIGTERM/SIGINT/SIGHUP stop it, health
    /// checks, the disk cap, the control socket, and events in the supervisor log.
    Detached { log: CappedLog },
    /// `nemoclaw run`: one run, the agent's stdout and stderr copied to ours, our stdin fed to
    /// it, the forwarded signals passed on, and nothing logged.
    Foreground {
        /// The agent's stdio and our ends of its output pipes, until the one start.
        stdio: Option<(Stdio, Vec<Output>)>,
        stdin_feed: Option<OwnedFd>,
    },
}

/// Where a pipe of the agent's output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink {
    AgentLog,
    Stdout,
    Stderr,
}

/// Our end of an agent output pipe.
struct Output {
    fd: OwnedFd,
    sink: Sink,
    closed: bool,
}

impl Output {
    fn new(fd: OwnedFd, sink: Sink) -> Output {
        Output {
            fd,
            sink,
            closed: false,
        }
    }
}

/// What a foreground run ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The agent's exit code (128 + signal when it was killed).
    pub code: i32,
    /// Whether the kernel killed a process for reaching `resources.memory`.
    pub oom: bool,
}

/// Logs one supervisor event as a JSON line on stderr (`logs/<name>/supervisor.jsonl`), in the
/// shape the supervisor's `tracing` events share.
pub fn event(name: &str, what: &str, detail: serde_json::Value) {
    logging::write_line(&logging::event_line(name, what, detail));
}

/// Removes what a killed supervisor may have left: the sandbox's cgroups (killing anything in
/// them) and the control socket. State and logs are kept.
pub fn clean_leftovers(home: &Home, name: &str) -> Result<(), SupervisorError> {
    if let Ok(layout) = cgroups::host_layout() {
        // v2: a dead supervisor's leaf (only called while no supervisor holds the lock; one
        // that just released it may still be exiting in there, so wait for it).
        if let Some(leaf) = cgroups::supervisor_leaf(&layout, name) {
            cgroups::remove_group(&leaf)?;
        }
        if let Ok(cg) = SandboxCgroup::locate(&layout, name) {
            cg.remove()?;
        }
    }
    let _ = std::fs::remove_file(home.control_socket(name));
    Ok(())
}

/// Loads and validates the deployed blueprint.
pub(crate) fn load(path: &Path) -> Result<Blueprint, SupervisorError> {
    crate::blueprint::set::load_one(path)
        .map(|e| e.blueprint)
        .map_err(|diagnostics| SupervisorError::Blueprint { diagnostics })
}

/// Blocks the signals the supervisor reads from its signalfd, in the calling thread (threads
/// started afterwards inherit the mask). Returns the set.
pub fn block_signals() -> Result<SigSet, SupervisorError> {
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        mask.add(s);
    }
    mask.thread_block()
        .map_err(|e| sup_io("signals", e.into()))?;
    Ok(mask)
}

/// The deployed agent: what its plugin adds to the sandbox, and its blueprint with the
/// plugin's defaults.
pub struct DeployedAgent {
    pub prepared: Prepared,
}

impl DeployedAgent {
    /// Loads `run/<name>/blueprint.yaml` and its plugin, checks the install, renders it.
    pub fn load(home: &Home, name: &str) -> Result<DeployedAgent, SupervisorError> {
        let bp = load(&home.deployed_blueprint(name))?;
        let plugin = crate::plugin::start::deployed(home, name, &bp)?;
        let prepared = crate::plugin::start::prepare(home, &bp, &plugin, None)?;
        Ok(DeployedAgent { prepared })
    }
}

/// Runs the supervisor for `name` until it is stopped, with a loopback-only network.
pub fn run(home: &Home, name: &str) -> Result<i32, SupervisorError> {
    let agent = DeployedAgent::load(home, name)?;
    run_with(home, name, Box::new(LoopbackOnly), agent)
}

/// Runs the supervisor for `name` until it is stopped; `net` sets up the sandbox's network
/// namespace on every (re)start. Returns the process exit code.
pub fn run_with(
    home: &Home,
    name: &str,
    net: Box<dyn NetworkSetup>,
    agent: DeployedAgent,
) -> Result<i32, SupervisorError> {
    let lock = PidLock::try_acquire(&home.supervisor_pid(name), "nemoclaw supervisor")?;
    clean_leftovers(home, name)?;
    join_supervisor_leaf(name);
    let mut d = Daemon::new(home, name, net, agent)?;
    let mask = block_signals()?;
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| sup_io("signalfd", e.into()))?;
    let sock_path = home.control_socket(name);
    let listener = bind_control_socket(&sock_path)?;
    event(
        name,
        "supervisor-started",
        serde_json::json!({"pid": std::process::id()}),
    );
    d.supervise(&sigfd, Some(&listener));
    event(
        name,
        "supervisor-exiting",
        serde_json::json!({"last_exit": d.last_exit}),
    );
    let _ = std::fs::remove_file(&sock_path);
    drop(lock);
    Ok(0)
}

/// What `nemoclaw run` runs: a blueprint (loaded by the caller from `blueprint_path`), with
/// its agent or `command`.
pub struct ForegroundRun<'a> {
    /// The blueprint with its plugin's defaults ([`Prepared::blueprint`]).
    pub blueprint: &'a Blueprint,
    /// What the agent's plugin adds (its files are written before the start).
    pub agent: &'a Prepared,
    pub blueprint_path: &'a Path,
    pub command: Option<Vec<String>>,
    pub spawn: SpawnOptions,
    /// The sandbox's gateway (network policy and inference); without it, only `lo`.
    pub gateway: bool,
}

/// Runs a sandbox once in the foreground of the calling process (`nemoclaw run`) with the same
/// loop as the detached supervisor: its output to our stdout and stderr, our stdin to it, and
/// SIGINT, SIGTERM, SIGHUP and SIGQUIT passed on. Holds the sandbox's supervisor lock
/// meanwhile (one sandbox per name at a time). Returns its exit code.
pub fn run_foreground(home: &Home, run: ForegroundRun<'_>) -> Result<Outcome, SupervisorError> {
    let name = run.blueprint.metadata.name.as_str();
    home.ensure()?;
    crate::home::create_dir_private(&home.run_dir(name))?;
    let _lock = PidLock::try_acquire(&home.supervisor_pid(name), "nemoclaw run")?;
    let mut spec = instance::spec_for(home, run.blueprint, run.command, Some(&run.agent.launch))?;
    crate::plugin::start::write_files(&spec.state_dir, &run.agent.files)?;
    let fg = Foreground::for_loop()?;
    let mask = fg.mask;
    let unblock = |e: SupervisorError| {
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&mask), None);
        e
    };
    // Built after the signals are blocked, so the gateway's threads inherit the mask.
    let net: Box<dyn NetworkSetup> = if run.gateway {
        let hook = GatewayHook::new(home, name, run.blueprint, run.blueprint_path)
            .map_err(|e| unblock(SupervisorError::Gateway(e)))?;
        Box::new(hook)
    } else {
        Box::new(LoopbackOnly)
    };
    spec.env.extend(net.agent_env());
    let bp_path = run.blueprint_path.to_path_buf();
    let (mut d, sigfd) = Daemon::foreground(name, run.blueprint, bp_path, spec, net, fg, run.spawn);
    d.stop = run.agent.stop.clone();
    d.supervise(&sigfd, None);
    if let Some(e) = d.start_error.take() {
        return Err(unblock(e.into()));
    }
    Ok(Outcome {
        code: d.last_exit.unwrap_or(127),
        oom: d.last_oom,
    })
}

/// v2: the supervisor lives in a leaf of its own next to the sandbox's (no internal processes).
fn join_supervisor_leaf(name: &str) {
    let Some(leaf) = cgroups::host_layout()
        .ok()
        .and_then(|l| cgroups::supervisor_leaf(&l, name))
    else {
        return;
    };
    if let Err(e) = cgroups::join_leaf(&leaf) {
        event(
            name,
            "cgroup-leaf-failed",
            serde_json::json!({"error": crate::error_chain(&e)}),
        );
    }
}

/// The control socket, readable by its owner only, non-blocking.
fn bind_control_socket(sock_path: &Path) -> Result<UnixListener, SupervisorError> {
    let _ = std::fs::remove_file(sock_path);
    let listener = UnixListener::bind(sock_path).map_err(|e| sup_io(sock_path, e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| sup_io(sock_path, e))?;
    std::fs::set_permissions(
        sock_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .map_err(|e| sup_io(sock_path, e))?;
    Ok(listener)
}

fn accept_clients(listener: &UnixListener, clients: &mut Vec<Client>) {
    while let Ok((stream, _)) = listener.accept() {
        let _ = stream.set_nonblocking(true);
        clients.push(Client {
            stream,
            buf: Vec::new(),
            greeted: false,
            ready: false,
        });
    }
}

/// What the supervisor's poll waits on, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The signalfd (SIGCHLD, and the signals that stop the supervisor).
    Signals,
    /// The control socket's listener.
    Control,
    /// A pipe of the agent's output, by its index.
    AgentOutput(usize),
    /// An http health probe's answer.
    HealthProbe,
    /// A connected control client, by its index.
    Client(usize),
}

/// The poll timeout until `next` (at most a minute).
fn poll_timeout(next: Option<Instant>) -> PollTimeout {
    let wait = next
        .map(|t| t.saturating_duration_since(Instant::now()))
        .unwrap_or(MAX_SLEEP)
        .min(MAX_SLEEP);
    PollTimeout::try_from(wait).unwrap_or(PollTimeout::NONE)
}

/// The longest the loop sleeps without a timer due.
const MAX_SLEEP: Duration = Duration::from_secs(60);

impl Daemon {
    /// Loads the deployed blueprint and builds the sandbox spec, opens the agent log. Nothing
    /// is started yet: the first tick starts the agent.
    fn new(
        home: &Home,
        name: &str,
        net: Box<dyn NetworkSetup>,
        agent: DeployedAgent,
    ) -> Result<Daemon, SupervisorError> {
        let bp_path = home.deployed_blueprint(name);
        let bp = agent.prepared.blueprint;
        let mut spec = instance::spec_for(home, &bp, None, Some(&agent.prepared.launch))?;
        crate::plugin::start::write_files(&spec.state_dir, &agent.prepared.files)?;
        spec.env.extend(net.agent_env());
        let logs = home.logs(name);
        crate::home::create_dir_private(&logs)?;
        let log_path = home.agent_log(name);
        let log = CappedLog::open(&log_path, AGENT_LOG_CAP).map_err(|e| sup_io(&log_path, e))?;
        let mut d = Daemon::base(name, &bp, bp_path, spec, net, Mode::Detached { log });
        d.disk_cap = bp.resources.disk.map(|b| b.bytes());
        d.health = bp
            .lifecycle
            .health_check
            .as_ref()
            .and_then(health::Check::from_blueprint);
        d.checkpoints = Some(Checkpoints::new(home, name, &bp));
        d.stop = agent.prepared.stop;
        d.home = Some(home.clone());
        Ok(d)
    }

    /// A loop that runs `spec` once in the foreground (see [`Mode::Foreground`]).
    fn foreground(
        name: &str,
        bp: &Blueprint,
        bp_path: PathBuf,
        spec: SandboxSpec,
        net: Box<dyn NetworkSetup>,
        fg: Foreground,
        opts: SpawnOptions,
    ) -> (Daemon, SignalFd) {
        let outputs = vec![
            Output::new(fg.out_r, Sink::Stdout),
            Output::new(fg.err_r, Sink::Stderr),
        ];
        let mode = Mode::Foreground {
            stdio: Some((fg.stdio, outputs)),
            stdin_feed: fg.stdin_feed,
        };
        let mut d = Daemon::base(name, bp, bp_path, spec, net, mode);
        d.opts = opts;
        d.exit_when_down = true;
        (d, fg.sigfd)
    }

    /// The state before the first start (the blueprint's restart policy; no health check, no
    /// disk cap).
    fn base(
        name: &str,
        bp: &Blueprint,
        bp_path: PathBuf,
        spec: SandboxSpec,
        net: Box<dyn NetworkSetup>,
        mode: Mode,
    ) -> Daemon {
        Daemon {
            name: name.to_string(),
            bp_path,
            disk_cap: None,
            policy: Policy::from_lifecycle(&bp.lifecycle),
            spec,
            tracker: Tracker::default(),
            sandbox: None,
            outputs: Vec::new(),
            buf: Vec::with_capacity(64 * 1024),
            mode,
            opts: SpawnOptions::default(),
            start_error: None,
            last_oom: false,
            state: State::Starting,
            message: None,
            restarts: 0,
            last_exit: None,
            next_start: Some(Instant::now()),
            stop_deadline: None,
            exit_when_down: false,
            down_state: None,
            net,
            health: None,
            health_state: health::HealthState::default(),
            health_run: None,
            next_health: None,
            started_at: Instant::now(),
            next_disk_check: Instant::now() + DISK_CHECK,
            checkpoints: None,
            stop: StopPlan::default(),
            trimmed: false,
            home: None,
        }
    }

    /// Whether the loop is over: asked to end, nothing running and nothing left to start.
    fn done(&self) -> bool {
        self.exit_when_down && self.sandbox.is_none() && self.next_start.is_none()
    }

    /// The one supervision loop: timers, then whatever the poll says is ready, until done.
    fn supervise(&mut self, sigfd: &SignalFd, listener: Option<&UnixListener>) {
        let mut clients: Vec<Client> = Vec::new();
        while !self.done() {
            self.tick();
            for source in self.wait_for_events(sigfd, listener, &clients) {
                match source {
                    Source::Signals => self.on_signals(sigfd),
                    Source::Control => {
                        if let Some(l) = listener {
                            accept_clients(l, &mut clients);
                        }
                    }
                    Source::AgentOutput(k) => self.pump_output(k),
                    Source::HealthProbe => self.reap_health(),
                    Source::Client(i) => clients[i].ready = true,
                }
            }
            self.outputs.retain(|o| !o.closed);
            self.serve_ready(&mut clients);
            self.reap();
        }
    }

    /// Logs an event of a detached supervisor (a foreground run logs nothing).
    fn note(&self, what: &str, detail: serde_json::Value) {
        if matches!(self.mode, Mode::Detached { .. }) {
            event(&self.name, what, detail);
        }
    }

    /// Polls every source until one is ready or the next timer is due; returns the ready
    /// ones (clients are marked on themselves).
    fn wait_for_events(
        &self,
        sigfd: &SignalFd,
        listener: Option<&UnixListener>,
        clients: &[Client],
    ) -> Vec<Source> {
        let mut sources = vec![Source::Signals];
        let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
        if let Some(l) = listener {
            sources.push(Source::Control);
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
        }
        for (k, o) in self.outputs.iter().enumerate() {
            sources.push(Source::AgentOutput(k));
            fds.push(PollFd::new(o.fd.as_fd(), PollFlags::POLLIN));
        }
        if let Some(fd) = self.health_run.as_ref().and_then(health::Running::wake_fd) {
            sources.push(Source::HealthProbe);
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        for (i, c) in clients.iter().enumerate() {
            sources.push(Source::Client(i));
            fds.push(PollFd::new(c.stream.as_fd(), PollFlags::POLLIN));
        }
        let _ = poll(&mut fds, poll_timeout(self.next_wakeup()));
        let ready: Vec<Source> = sources
            .into_iter()
            .zip(&fds)
            .filter(|(_, f)| f.revents().is_some_and(|r| !r.is_empty()))
            .map(|(s, _)| s)
            .collect();
        ready
    }

    fn status(&self) -> Status {
        Status {
            name: self.name.clone(),
            state: self.state,
            pid: self.sandbox.as_ref().map(|s| s.pid.as_raw()),
            supervisor_pid: std::process::id(),
            restarts: self.restarts,
            recent_crashes: self.tracker.recent(),
            last_exit: self.last_exit,
            message: self.message.clone(),
            healthy: self.health_state.healthy,
            memory_bytes: self
                .sandbox
                .as_ref()
                .and_then(|s| s.cgroup.as_ref())
                .and_then(|c| c.memory_usage()),
            cpu_percent: self.sandbox.as_ref().and_then(|s| {
                let secs = s.cgroup.as_ref()?.cpu_seconds(Some(s.pid.as_raw()))?;
                let up = self.started_at.elapsed().as_secs_f64();
                (up > 0.0).then(|| (secs / up * 1000.0).round() / 10.0)
            }),
            last_inference: self
                .net
                .last_inference()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            note: self
                .checkpoints
                .as_ref()
                .and_then(|c| c.note())
                .map(String::from),
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        [
            self.next_start,
            self.stop_deadline,
            self.disk_cap.map(|_| self.next_disk_check),
            self.next_health,
            self.health_run.as_ref().map(|r| r.deadline),
            self.checkpoints.as_ref().and_then(Checkpoints::next_due),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Timers: start or restart, escalate a stop, check the disk cap, take a checkpoint.
    fn tick(&mut self) {
        self.tick_health();
        self.tick_checkpoint();
        let now = Instant::now();
        // (A stop clears `next_start`, so nothing starts once the loop is asked to end.)
        if self.next_start.is_some_and(|t| t <= now) && self.sandbox.is_none() {
            self.next_start = None;
            self.start();
        }
        if self.stop_deadline.is_some_and(|t| t <= now) {
            self.stop_deadline = None;
            if let Some(s) = &self.sandbox {
                self.note("stop-timeout", serde_json::json!({"signal": "SIGKILL"}));
                let _ = s.signal(Signal::SIGKILL);
            }
        }
        if let Some(cap) = self.disk_cap {
            if self.next_disk_check <= now {
                self.next_disk_check = now + DISK_CHECK;
                let used = dir_size(&self.spec.state_dir);
                if used > cap && self.sandbox.is_some() && self.state == State::Running {
                    self.message = Some(format!("the state directory uses {used} bytes, over resources.disk ({cap} bytes): agent stopped"));
                    self.note("disk-cap", serde_json::json!({"used": used, "cap": cap}));
                    self.down_state = Some(State::Failed);
                    self.terminate(None);
                }
            }
        }
    }

    /// Takes the periodic checkpoint when it is due, unless the agent is not running, crashed
    /// within the crash window or is unhealthy (a crash-looping agent's state is never
    /// checkpointed: it may be the cause).
    fn tick_checkpoint(&mut self) {
        let now = Instant::now();
        let Some(c) = &mut self.checkpoints else {
            return;
        };
        if c.next_due().is_none_or(|t| t > now) {
            return;
        }
        c.schedule(now);
        match self.why_not_checkpoint(now) {
            Some(reason) => self.note("checkpoint-skipped", serde_json::json!({"reason": reason})),
            None => {
                let _ = self.checkpoint();
            }
        }
    }

    /// Why the agent's state should not be checkpointed now, if it should not.
    fn why_not_checkpoint(&self, now: Instant) -> Option<&'static str> {
        if self.state != State::Running {
            Some("the agent is not running")
        } else if self.tracker.crashed_within(self.policy.crash_window, now) {
            Some("the agent crashed within lifecycle.crashWindow")
        } else if self.health_state.healthy == Some(false) {
            Some("the agent is unhealthy")
        } else {
            None
        }
    }

    /// Takes a checkpoint of the running agent's state now and logs it.
    fn checkpoint(&mut self) -> Result<Taken, CheckpointError> {
        let cg = self.sandbox.as_ref().and_then(|s| s.cgroup.as_ref());
        let result = match (&self.checkpoints, cg) {
            (Some(c), Some(cg)) => c.take(cg),
            _ => Err(CheckpointError::NoCgroup),
        };
        match &result {
            Ok(t) => self.note("checkpoint", serde_json::json!(t.report())),
            Err(e) => self.note(
                "checkpoint-failed",
                serde_json::json!({"error": crate::error_chain(e)}),
            ),
        }
        result
    }

    /// `checkpoint` on the control socket: one now, if the agent runs.
    fn checkpoint_request(&mut self, id: serde_json::Value) -> Response {
        if self.state != State::Running {
            return Response::err(
                id,
                format!("the agent is not running (state: {:?})", self.state),
            );
        }
        match self.checkpoint() {
            Ok(t) => Response {
                checkpoint: Some(t.report()),
                ..Response::ok(id)
            },
            Err(e) => Response::err(id, crate::error_chain(&e)),
        }
    }

    /// After giving up (`crashes` within the window): restores the newest checkpoint once
    /// (`lifecycle.restoreOnCrashLoop`) and starts the agent again. False when nothing was
    /// restored (the caller gives up for real).
    fn restore_after_crash_loop(&mut self, crashes: u32) -> bool {
        let Some(c) = &mut self.checkpoints else {
            return false;
        };
        let info = match c.restore_newest(crashes) {
            Ok(Some(info)) => info,
            Ok(None) => return false,
            Err(e) => {
                self.note(
                    "checkpoint-restore-failed",
                    serde_json::json!({"error": crate::error_chain(&e)}),
                );
                return false;
            }
        };
        let line = c.note().unwrap_or_default().to_string();
        self.note(
            "checkpoint-restored",
            serde_json::json!({"id": info.id, "crashes": crashes}),
        );
        if let Mode::Detached { log } = &mut self.mode {
            let _ = log.write(format!("nemoclaw: {line}; starting the agent again\n").as_bytes());
        }
        self.tracker = Tracker::default();
        self.restarts += 1;
        self.state = State::Backoff;
        self.next_start = Some(Instant::now());
        true
    }

    /// Starts a health check when one is due; kills one that overran its timeout.
    fn tick_health(&mut self) {
        let now = Instant::now();
        if let Some(r) = &mut self.health_run {
            if r.deadline <= now {
                r.expire();
            }
            return;
        }
        let (Some(check), Some(due)) = (&self.health, self.next_health) else {
            return;
        };
        if due > now || self.state != State::Running {
            return;
        }
        let since_start = now.saturating_duration_since(self.started_at);
        self.next_health = Some(now + check.next_delay(&self.health_state, since_start));
        let Some(target) = self.target() else { return };
        match health::start(check, &target) {
            Ok(r) => self.health_run = Some(r),
            Err(e) => {
                self.note(
                    "health-check-error",
                    serde_json::json!({"error": crate::error_chain(&e)}),
                );
                self.health_result(false);
            }
        }
    }

    fn health_result(&mut self, ok: bool) {
        let Some(check) = &self.health else { return };
        let in_start = self.started_at.elapsed() < check.start_period;
        let before = self.health_state.healthy;
        self.health_state.record(ok, check.retries, in_start);
        if self.health_state.healthy != before {
            self.note(
                "health",
                serde_json::json!({"healthy": self.health_state.healthy}),
            );
        }
    }

    /// Reaps a finished health check (an exec check's process, an http probe's answer).
    fn reap_health(&mut self) {
        let Some(ok) = self
            .health_run
            .as_mut()
            .and_then(health::Running::try_result)
        else {
            return;
        };
        self.health_run = None;
        self.health_result(ok);
    }

    /// What `exec` and exec health checks need to join the running sandbox.
    fn target(&self) -> Option<Target> {
        let sb = self.sandbox.as_ref()?;
        Some(Target {
            pid: sb.pid.as_raw(),
            uid: self.spec.uid,
            gid: self.spec.gid,
            workdir: self.spec.workdir.clone(),
            env: self
                .spec
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            cgroup_dirs: sb
                .cgroup
                .as_ref()
                .map(|c| c.dirs.iter().map(|(_, _, p)| p.clone()).collect())
                .unwrap_or_default(),
            seccomp_deny: self.spec.seccomp_deny.clone(),
        })
    }

    fn start(&mut self) {
        self.state = State::Starting;
        match self.spawn_agent() {
            Ok((sb, outputs)) => {
                self.note(
                    "agent-started",
                    serde_json::json!({"pid": sb.pid.as_raw(), "restarts": self.restarts}),
                );
                self.sandbox = Some(sb);
                self.outputs = outputs;
                self.feed_stdin();
                self.state = State::Running;
                self.started_at = Instant::now();
                if !self.trimmed && matches!(self.mode, Mode::Detached { .. }) {
                    // Start-up is over: what only it needed leaves the supervisor's RSS.
                    super::memory::trim_startup_pages();
                    self.trimmed = true;
                }
                self.health_state = health::HealthState::default();
                self.next_health = self
                    .health
                    .as_ref()
                    .map(|c| Instant::now() + c.next_delay(&self.health_state, Duration::ZERO));
                self.message = None;
            }
            Err(e) => {
                let text = crate::error_chain(&e);
                self.note("start-failed", serde_json::json!({"error": text}));
                self.message = Some(format!("cannot start the sandbox: {text}"));
                self.start_error = Some(e);
                self.after_exit(127);
            }
        }
    }

    /// Spawns the sandbox; returns it and our ends of its output pipes.
    fn spawn_agent(&mut self) -> Result<(Sandbox, Vec<Output>), SpawnError> {
        let (stdio, outputs) = self.agent_stdio()?;
        let sb = spawn::spawn(&self.spec, &self.opts, stdio, self.net.as_mut())?;
        Ok((sb, outputs))
    }

    /// The agent's stdio: detached, no input and stdout and stderr on one pipe into the agent
    /// log; in the foreground, the pipes prepared for the one start.
    fn agent_stdio(&mut self) -> Result<(Stdio, Vec<Output>), SpawnError> {
        match &mut self.mode {
            Mode::Detached { .. } => {
                let (r, w) = spawn::output_pipe()?;
                let w2 = w.try_clone().map_err(|source| SpawnError::Io {
                    what: "duplicating the output pipe".into(),
                    source,
                })?;
                let stdio = Stdio {
                    stdin: spawn::dev_null()?,
                    stdout: w,
                    stderr: w2,
                };
                Ok((stdio, vec![Output::new(r, Sink::AgentLog)]))
            }
            // A foreground run starts once (it never restarts), so this is always there.
            Mode::Foreground { stdio, .. } => stdio.take().ok_or(SpawnError::Vanished),
        }
    }

    /// Foreground: our stdin goes to the agent on a thread of its own.
    fn feed_stdin(&mut self) {
        if let Mode::Foreground { stdin_feed, .. } = &mut self.mode {
            if let Some(w) = stdin_feed.take() {
                std::thread::spawn(move || copy_stdin(w));
            }
        }
    }

    /// Copies what output pipe `k` has to its sink; marks it closed at its end.
    fn pump_output(&mut self, k: usize) {
        let Some(out) = self.outputs.get_mut(k).filter(|o| !o.closed) else {
            return;
        };
        match read_into_spare(&out.fd, &mut self.buf) {
            Ok(0) => out.closed = true,
            Ok(_) => {
                // A failing sink (a full disk, a reader gone) never blocks the agent: keep
                // draining.
                let _ = match (&mut self.mode, out.sink) {
                    (Mode::Detached { log }, Sink::AgentLog) => log.write(&self.buf),
                    (_, Sink::Stdout) => {
                        let mut o = std::io::stdout().lock();
                        o.write_all(&self.buf).and_then(|_| o.flush())
                    }
                    _ => std::io::stderr().write_all(&self.buf),
                };
            }
            Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {}
            Err(_) => out.closed = true,
        }
    }

    /// Reads every output pipe to its end (the agent is gone, so they all end).
    fn drain_outputs(&mut self) {
        while !self.outputs.is_empty() {
            for k in 0..self.outputs.len() {
                self.pump_output(k);
            }
            self.outputs.retain(|o| !o.closed);
        }
    }

    fn reap(&mut self) {
        self.reap_health();
        let Some(sb) = &mut self.sandbox else { return };
        let exit = match sb.try_wait() {
            Ok(Some(e)) => e,
            Ok(None) => return,
            Err(e) => {
                self.note(
                    "wait-failed",
                    serde_json::json!({"error": crate::error_chain(&e)}),
                );
                return;
            }
        };
        // Drain what the agent wrote before it died.
        self.drain_outputs();
        let mut sb = self.sandbox.take().expect("checked above");
        let oom = sb.teardown().unwrap_or(false);
        self.last_oom = oom;
        let code = exit.code();
        self.note(
            "agent-exited",
            serde_json::json!({"code": code, "oom": oom}),
        );
        if oom {
            self.message = Some("the agent reached resources.memory and was killed".into());
        }
        self.after_exit(code);
    }

    fn after_exit(&mut self, code: i32) {
        // An agent that ends its clean stop with another code (Hermes: 1 on SIGTERM) stopped
        // cleanly all the same.
        let stopped = self.state == State::Stopping && self.stop.clean_exits.contains(&code);
        let code = if stopped { 0 } else { code };
        self.last_exit = Some(code);
        self.stop_deadline = None;
        self.next_health = None;
        if let Some(r) = &mut self.health_run {
            r.expire();
        }
        if let Some(s) = self.down_state.take() {
            self.state = s;
            return;
        }
        if self.exit_when_down {
            self.state = State::Exited;
            return;
        }
        match self.tracker.on_exit(&self.policy, code, Instant::now()) {
            Decision::Restart(delay) => {
                self.restarts += 1;
                self.state = State::Backoff;
                self.next_start = Some(Instant::now() + delay);
                self.note(
                    "restart-scheduled",
                    serde_json::json!({"in_ms": u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)}),
                );
            }
            Decision::StayDown => self.state = State::Exited,
            Decision::GiveUp { crashes, .. } if self.restore_after_crash_loop(crashes) => {}
            Decision::GiveUp { crashes, window } => {
                self.state = State::Failed;
                self.message = Some(format!(
                    "gave up after {crashes} crashes within {}",
                    humantime::format_duration(window)
                ));
                self.note("gave-up", serde_json::json!({"crashes": crashes}));
            }
        }
    }

    /// SIGTERM now, SIGKILL after the stop timeout; the supervisor exits once the sandbox is gone.
    fn begin_stop(&mut self, timeout: Option<Duration>) {
        self.exit_when_down = true;
        self.terminate(timeout);
    }

    fn terminate(&mut self, timeout: Option<Duration>) {
        self.next_start = None;
        if let Some(s) = &self.sandbox {
            self.state = State::Stopping;
            let _ = s.signal(self.stop.signal);
            self.stop_deadline = Some(Instant::now() + timeout.unwrap_or(self.policy.stop_timeout));
            self.note("stopping", serde_json::json!({"pid": s.pid.as_raw()}));
        }
    }

    /// Reads every signal pending: SIGCHLD reaps, the others stop the supervisor.
    fn on_signals(&mut self, sigfd: &SignalFd) {
        while let Ok(Some(info)) = sigfd.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) => self.reap(),
                Ok(sig) if matches!(self.mode, Mode::Foreground { .. }) => self.forward(sig),
                Ok(_) => self.begin_stop(None),
                Err(_) => {}
            }
        }
    }

    /// Passes `sig` on to the running sandbox.
    fn forward(&self, sig: Signal) {
        if let Some(s) = &self.sandbox {
            let _ = s.signal(sig);
        }
    }

    /// Serves the clients that were readable; drops the ones that are gone or were refused.
    fn serve_ready(&mut self, clients: &mut Vec<Client>) {
        clients.retain_mut(|c| !std::mem::take(&mut c.ready) || self.serve(c));
    }

    /// Reads and answers a client's lines; false when the client is gone.
    fn serve(&mut self, c: &mut Client) -> bool {
        let mut chunk = [0u8; 4096];
        match std::io::Read::read(&mut c.stream, &mut chunk) {
            Ok(0) => return false,
            Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
        if c.buf.len() > 64 * 1024 {
            return false;
        }
        while let Some(pos) = c.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = c.buf.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line);
            let resp = self.answer(c, text.trim());
            let mut out = serde_json::to_vec(&resp).unwrap_or_default();
            out.push(b'\n');
            let _ = c.stream.set_nonblocking(false);
            let ok = c.stream.write_all(&out).is_ok();
            let _ = c.stream.set_nonblocking(true);
            if !ok || (!resp.ok && !c.greeted) {
                return false;
            }
        }
        true
    }

    fn answer(&mut self, c: &mut Client, line: &str) -> Response {
        let env = match protocol::parse_request(line) {
            Ok(e) => e,
            Err(r) => return *r,
        };
        let id = env.id;
        match env.request {
            Request::Hello { version, .. } => {
                if version != PROTOCOL_VERSION {
                    return Response::err(id, format!("protocol version {version} is not supported (this supervisor speaks {PROTOCOL_VERSION})"));
                }
                c.greeted = true;
                Response {
                    version: Some(PROTOCOL_VERSION),
                    server: Some(format!("nemoclaw/{}", crate::VERSION)),
                    ..Response::ok(id)
                }
            }
            _ if !c.greeted => Response::err(id, "send hello first"),
            Request::Status => Response {
                status: Some(self.status()),
                ..Response::ok(id)
            },
            Request::Stop { timeout_ms } => {
                self.begin_stop(timeout_ms.map(Duration::from_millis));
                Response {
                    status: Some(self.status()),
                    ..Response::ok(id)
                }
            }
            Request::ReloadPolicy => self.reload_policy(id),
            Request::ExecInfo => self.exec_info(id),
            Request::Checkpoint => self.checkpoint_request(id),
        }
    }

    /// Re-reads the deployed blueprint: network and inference first (a refused reload changes
    /// nothing), then the restart policy and the disk cap.
    fn reload_policy(&mut self, id: serde_json::Value) -> Response {
        let loaded = match &self.home {
            Some(home) => DeployedAgent::load(home, &self.name)
                .map(|a| (a.prepared.blueprint, a.prepared.files)),
            None => load(&self.bp_path).map(|bp| (bp, vec![])),
        };
        let (bp, files) = match loaded {
            Ok(x) => x,
            Err(e) => return Response::err(id, crate::error_chain(&e)),
        };
        if let Err(e) = self.net.reload(&bp, &self.bp_path) {
            let e = crate::error_chain(e.as_ref());
            self.note("reload-failed", serde_json::json!({"error": e}));
            return Response::err(id, e);
        }
        // The agent's config follows the blueprint (models, say); agents that watch their
        // config (OpenClaw) take it at once, others at their next start.
        if let Err(e) = crate::plugin::start::write_files(&self.spec.state_dir, &files) {
            self.note(
                "config-not-rendered",
                serde_json::json!({"error": crate::error_chain(&e)}),
            );
        }
        self.policy = Policy::from_lifecycle(&bp.lifecycle);
        self.disk_cap = bp.resources.disk.map(|b| b.bytes());
        if let Some(c) = &mut self.checkpoints {
            c.reload(&bp.lifecycle);
        }
        self.note("policy-reloaded", serde_json::json!({}));
        Response {
            status: Some(self.status()),
            ..Response::ok(id)
        }
    }

    /// What `nemoclaw exec` needs to join the running agent.
    fn exec_info(&self, id: serde_json::Value) -> Response {
        match self.target() {
            Some(t) if self.state == State::Running => Response {
                exec: Some(ExecInfo {
                    pid: t.pid,
                    uid: t.uid,
                    gid: t.gid,
                    workdir: t.workdir,
                    env: t.env,
                    cgroup_dirs: t.cgroup_dirs,
                    seccomp_deny: t.seccomp_deny,
                }),
                ..Response::ok(id)
            },
            _ => Response::err(
                id,
                format!("the agent is not running (state: {:?})", self.state),
            ),
        }
    }
}

/// Total size of the regular files under `dir` (not following symlinks).
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                total += m.len();
            }
        }
    }
    total
}

fn sup_io(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> SupervisorError {
    SupervisorError::Io {
        path: path.into(),
        source,
    }
}
