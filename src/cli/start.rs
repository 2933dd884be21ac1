//! `nemoclaw start BLUEPRINT.yaml|NAME`: start a sandbox under a detached supervisor and return
//! once the agent runs (or failed to start). Until the reconciler owns the inventory, the
//! deployed blueprint is the copy in `run/<name>/blueprint.yaml`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::Args;

use super::{Context, Exit};
use crate::home::Home;
use crate::sandbox::instance;
use crate::supervisor::{self, client::Client, daemon, protocol::Request, protocol::State};

#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// A blueprint file, or the name of a sandbox (from the home's blueprints/ or the last deployed one).
    pub target: String,
    /// How long to wait for the agent to be running.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
}

/// Finds the blueprint file for `target` (a path, or a name).
pub fn resolve(home: &Home, target: &str) -> anyhow::Result<PathBuf> {
    let p = Path::new(target);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    for candidate in [
        home.blueprints().join(format!("{target}.yaml")),
        daemon::deployed_blueprint(home, target),
    ] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "`{target}` is neither a blueprint file nor a known sandbox name (looked in {})",
        home.blueprints().display()
    )
}

pub fn run(a: StartArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let home = ctx.home()?;
    home.ensure()?;
    let home = Home::at(std::fs::canonicalize(home.root())?);
    let path = resolve(&home, &a.target)?;
    let entry = match crate::blueprint::set::load_one(&path) {
        Ok(e) => e,
        Err(diags) => {
            eprint!("{}", crate::blueprint::diag::render_human(&diags, |_| None));
            return Ok(Exit::Failure);
        }
    };
    let name = entry.blueprint.metadata.name.clone();
    if supervisor::is_running(&home, &name) {
        if !ctx.quiet {
            println!("sandbox `{name}` is already running");
        }
        return Ok(Exit::Ok);
    }
    crate::home::create_dir_private(&home.run_dir(&name))?;
    // Host checks first: bad input fails here, naming the field, with nothing started.
    instance::spec_for(&home, &entry.blueprint, None)
        .with_context(|| path.display().to_string())?;
    let deployed = daemon::deployed_blueprint(&home, &name);
    if std::fs::canonicalize(&path).ok() != std::fs::canonicalize(&deployed).ok() {
        crate::home::write_atomic(&deployed, entry.text.as_bytes(), 0o600)?;
    }
    daemon::clean_leftovers(&home, &name)?;
    let logs = home.logs(&name);
    crate::home::create_dir_private(&logs)?;
    let sup_log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs.join("supervisor.jsonl"))?;
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg0("nemoclaw-supervisor")
        .arg(supervisor::SUPERVISE_ARG)
        .arg(&name)
        .env("NEMOCLAW_HOME", home.root())
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(sup_log));
    // SAFETY: setsid in the forked child before exec is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start the supervisor")?;
    let deadline = Instant::now() + a.wait;
    let sock = supervisor::control_socket(&home, &name);
    loop {
        if let Some(st) = child.try_wait()? {
            bail!(
                "the supervisor exited ({st}) before the sandbox started; see {}",
                logs.join("supervisor.jsonl").display()
            );
        }
        if let Ok(mut c) = Client::connect(&sock) {
            let r = c.request(Request::Status)?;
            if let Some(s) = r.status {
                match s.state {
                    State::Running => {
                        if !ctx.quiet {
                            println!(
                                "started `{name}` (supervisor {}, sandbox init {})",
                                s.supervisor_pid,
                                s.pid.unwrap_or(0)
                            );
                        }
                        return Ok(Exit::Ok);
                    }
                    State::Failed | State::Exited => {
                        let msg = s.message.unwrap_or_else(|| {
                            format!("the agent exited with {}", s.last_exit.unwrap_or(-1))
                        });
                        return Err(anyhow!(
                            "sandbox `{name}` did not stay up: {msg}; see {}",
                            logs.join("agent.log").display()
                        ));
                    }
                    _ => {}
                }
            }
        }
        if Instant::now() > deadline {
            bail!(
                "sandbox `{name}` is not running after {:?}; see {}",
                a.wait,
                logs.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
