//! `nemoclaw run BLUEPRINT.yaml [-- CMD ARGS...]`: run a command (or the blueprint's agent) in
//! the blueprint's sandbox in the foreground. The sandbox gets its own session and pipes, never
//! the caller's terminal; its stdout and stderr are streamed; `run` exits with the command's
//! exit code (128 + signal when it was killed). SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to
//! `run` are forwarded to the sandbox. The loop is the supervisor's
//! ([`crate::supervisor::daemon::run_foreground`]).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, Context as _};
use clap::Args;

use super::{Context, Exit};
use crate::plugin::start;
use crate::sandbox::SpawnOptions;
use crate::supervisor::daemon::{run_foreground, ForegroundRun};
use crate::supervisor::pidlock::PidLockError;
use crate::supervisor::SupervisorError;

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The blueprint file.
    pub blueprint: PathBuf,
    /// The command to run instead of the blueprint's agent (after `--`).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
    /// Benchmark only: no cgroup (weakens the sandbox).
    #[arg(long, hide = true)]
    pub bench_no_cgroups: bool,
    /// Benchmark only: no seccomp filter (weakens the sandbox).
    #[arg(long, hide = true)]
    pub bench_no_seccomp: bool,
    /// Benchmarks only: no gateway (the sandbox keeps only `lo`).
    #[arg(long, hide = true)]
    pub bench_no_gateway: bool,
}

pub fn run(a: RunArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let entry = match crate::blueprint::set::load_one(&a.blueprint) {
        Ok(e) => e,
        Err(diags) => {
            eprint!("{}", crate::blueprint::diag::render_human(&diags, |_| None));
            return Ok(Exit::Failure);
        }
    };
    let home = ctx.home()?;
    let plugin = start::resolve(&home, &entry.blueprint, a.blueprint.parent())
        .with_context(|| a.blueprint.display().to_string())?;
    let quiet = ctx.quiet;
    let mut progress = |line: &str| {
        if !quiet {
            eprintln!("  setup: {line}");
        }
    };
    let agent = start::install_and_prepare(&home, &entry.blueprint, &plugin, &mut progress)
        .with_context(|| format!("cannot start sandbox `{}`", entry.blueprint.metadata.name))?;
    let bp = &agent.blueprint;
    let run = ForegroundRun {
        blueprint: bp,
        agent: &agent,
        blueprint_path: &a.blueprint,
        command: (!a.command.is_empty()).then(|| a.command.clone()),
        spawn: SpawnOptions {
            cgroups: !a.bench_no_cgroups,
            seccomp: !a.bench_no_seccomp,
        },
        gateway: !a.bench_no_gateway,
    };
    let outcome = run_foreground(&home, run).map_err(|e| explain(e, &bp.metadata.name, &a))?;
    if outcome.oom {
        eprintln!(
            "nemoclaw: sandbox `{}` reached its memory limit (resources.memory: {}); the kernel killed a process",
            bp.metadata.name,
            bp.resources.memory.map(|m| m.to_string()).unwrap_or_default()
        );
    }
    let _ = std::io::stdout().flush();
    std::process::exit(outcome.code);
}

/// What `run` says when the sandbox cannot run.
fn explain(e: SupervisorError, name: &str, a: &RunArgs) -> anyhow::Error {
    match e {
        SupervisorError::AlreadyRunning(PidLockError::Held { pid, what }) => anyhow!("sandbox `{name}` is already running (process {pid}, {what}): stop it first, or use `nemoclaw exec {name} -- CMD`"),
        SupervisorError::Spec(e) => anyhow!(e).context(format!("{}", a.blueprint.display())),
        SupervisorError::Gateway(e) => anyhow!(e).context(format!("cannot start sandbox `{name}`")),
        SupervisorError::Spawn(e) => anyhow!(e).context(format!("cannot start sandbox `{name}`")),
        SupervisorError::AlreadyRunning(e) => e.into(),
        e => e.into(),
    }
}
