//! `nemoclaw start|stop|restart|destroy`: the lifecycle commands. They parse, call
//! [`crate::reconcile::lifecycle`] (which holds the apply lock and keeps the inventory true) and
//! print what happened.

use std::time::Duration;

use clap::Args;

use super::{Context, Exit};
use crate::home::Home;
use crate::reconcile::lifecycle::{self, LifecycleError};
use crate::supervisor::launch::{LaunchError, Started, Stopped};

#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// A blueprint file, or the name of a sandbox (from the home's blueprints/ or the last deployed one).
    pub target: String,
    /// How long to wait for the agent to be running.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct StopArgs {
    /// The sandbox name.
    pub name: String,
    /// Override the blueprint's lifecycle.stopTimeout.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, Args)]
pub struct RestartArgs {
    /// The sandbox name.
    pub name: String,
    /// How long to wait for the agent to be running again.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct DestroyArgs {
    /// The sandbox name.
    pub name: String,
    /// Also delete the agent's state directory (otherwise it is kept).
    #[arg(long)]
    pub delete_state: bool,
}

fn home(ctx: &Context) -> anyhow::Result<Home> {
    let h = ctx.home()?;
    h.ensure()?;
    Ok(Home::at(std::fs::canonicalize(h.root())?))
}

/// Blueprint errors are shown as `validate` shows them (file:line:col); the rest propagate.
fn report(e: LifecycleError) -> anyhow::Result<Exit> {
    match e {
        LifecycleError::Launch(LaunchError::Blueprint { diagnostics }) => {
            eprint!(
                "{}",
                crate::blueprint::diag::render_human(&diagnostics, |_| None)
            );
            Ok(Exit::Failure)
        }
        e => Err(e.into()),
    }
}

fn say_started(ctx: &Context, name: &str, s: &Started) {
    if ctx.quiet {
        return;
    }
    match s {
        Started::AlreadyRunning => println!("sandbox `{name}` is already running"),
        Started::Now {
            supervisor_pid,
            pid,
        } => {
            println!("started `{name}` (supervisor {supervisor_pid}, sandbox init {pid})")
        }
    }
}

fn say_stopped(ctx: &Context, name: &str, s: Stopped) {
    if ctx.quiet {
        return;
    }
    match s {
        Stopped::WasNotRunning => println!("sandbox `{name}` is not running"),
        Stopped::Now => println!("stopped `{name}` (state and logs kept)"),
    }
}

/// `start BLUEPRINT.yaml|NAME`.
pub fn start(a: StartArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let quiet = ctx.quiet;
    let mut progress = |line: &str| {
        if !quiet {
            eprintln!("  setup: {line}");
        }
    };
    match lifecycle::start(&home(ctx)?, &a.target, a.wait, &mut progress) {
        Ok((name, s)) => {
            say_started(ctx, &name, &s);
            Ok(Exit::Ok)
        }
        Err(e) => report(e),
    }
}

/// `stop NAME`.
pub fn stop(a: StopArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let s = lifecycle::stop(&home(ctx)?, &a.name, a.timeout)?;
    say_stopped(ctx, &a.name, s);
    Ok(Exit::Ok)
}

/// `restart NAME`.
pub fn restart(a: RestartArgs, ctx: &Context) -> anyhow::Result<Exit> {
    match lifecycle::restart(&home(ctx)?, &a.name, a.wait) {
        Ok((stopped, started)) => {
            say_stopped(ctx, &a.name, stopped);
            say_started(ctx, &a.name, &started);
            Ok(Exit::Ok)
        }
        Err(e) => report(e),
    }
}

/// `destroy NAME [--delete-state]`.
pub fn destroy(a: DestroyArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let home = home(ctx)?;
    let stopped = lifecycle::destroy(&home, &a.name, a.delete_state)?;
    say_stopped(ctx, &a.name, stopped);
    if a.delete_state {
        println!("destroyed `{}` and deleted its state", a.name);
    } else {
        println!(
            "destroyed `{}` (state kept in {})",
            a.name,
            home.state(&a.name).display()
        );
    }
    Ok(Exit::Ok)
}
