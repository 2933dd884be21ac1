//! The lifecycle commands as the reconciler owns them: `start`, `stop`, `restart` and `destroy`
//! act under the apply lock and keep the inventory true. A sandbox the user stopped is recorded
//! as stopped, so neither `apply` nor `watch` brings it back until `start` (or
//! `apply --replace NAME`) does.

use std::path::Path;
use std::time::Duration;

use anyhow::bail;
use clap::Args;

use super::apply::lock;
use super::{start, stop, Context, Exit};
use crate::home::Home;
use crate::reconcile::inventory::{self, Inventory};

/// How long lifecycle commands wait for a running apply.
const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

fn home(ctx: &Context) -> anyhow::Result<Home> {
    let h = ctx.home()?;
    h.ensure()?;
    Ok(Home::at(std::fs::canonicalize(h.root())?))
}

/// Marks a deployed sandbox stopped (or not); a no-op for names outside the inventory.
fn mark_stopped(home: &Home, name: &str, stopped: bool) -> anyhow::Result<()> {
    let inv = Inventory::load(home)?;
    if let Some(rec) = inv.get(name) {
        if rec.stopped != stopped {
            let mut rec = rec.clone();
            rec.stopped = stopped;
            inventory::save_record(home, &rec)?;
            inventory::bump_generation(home)?;
        }
    }
    Ok(())
}

/// `start BLUEPRINT.yaml|NAME`: a deployed NAME starts from its deployed blueprint and is no
/// longer recorded as stopped; anything else starts directly (`nemoclaw run`'s detached twin).
pub fn start(mut a: start::StartArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let home = home(ctx)?;
    let _lock = lock(&home, LOCK_TIMEOUT, "nemoclaw start")?;
    let deployed =
        Inventory::load(&home)?.get(&a.target).is_some() && !Path::new(&a.target).is_file();
    if deployed {
        let name = a.target.clone();
        a.target = crate::reconcile::apply::deployed_file(&home, &name)
            .display()
            .to_string();
        let code = start::run(a, ctx)?;
        mark_stopped(&home, &name, false)?;
        return Ok(code);
    }
    start::run(a, ctx)
}

/// `stop NAME`: stops the sandbox and records that the user wants it stopped.
pub fn stop(a: stop::StopArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let home = home(ctx)?;
    let _lock = lock(&home, LOCK_TIMEOUT, "nemoclaw stop")?;
    let name = a.name.clone();
    let code = stop::run(a, ctx)?;
    mark_stopped(&home, &name, true)?;
    Ok(code)
}

#[derive(Debug, Clone, Args)]
pub struct RestartArgs {
    /// The sandbox name.
    pub name: String,
    /// How long to wait for the agent to be running again.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
}

/// `restart NAME`: stop, then start from the deployed blueprint.
pub fn restart(a: RestartArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let home = home(ctx)?;
    let _lock = lock(&home, LOCK_TIMEOUT, "nemoclaw restart")?;
    if Inventory::load(&home)?.get(&a.name).is_none() {
        bail!(
            "`{}` is not a deployed sandbox (see `nemoclaw status`)",
            a.name
        );
    }
    stop::run(
        stop::StopArgs {
            name: a.name.clone(),
            timeout: None,
        },
        ctx,
    )?;
    let target = crate::reconcile::apply::deployed_file(&home, &a.name)
        .display()
        .to_string();
    let code = start::run(
        start::StartArgs {
            target,
            wait: a.wait,
        },
        ctx,
    )?;
    mark_stopped(&home, &a.name, false)?;
    Ok(code)
}

#[derive(Debug, Clone, Args)]
pub struct DestroyArgs {
    /// The sandbox name.
    pub name: String,
    /// Also delete the agent's state directory (otherwise it is kept).
    #[arg(long)]
    pub delete_state: bool,
}

/// `destroy NAME`: stop the sandbox and remove it from the inventory; state is kept unless
/// `--delete-state`. Logs are kept.
pub fn destroy(a: DestroyArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let home = home(ctx)?;
    let _lock = lock(&home, LOCK_TIMEOUT, "nemoclaw destroy")?;
    if Inventory::load(&home)?.get(&a.name).is_none() {
        bail!("`{}` is not a deployed sandbox: nemoclaw only destroys what it deployed (see `nemoclaw status`)", a.name);
    }
    stop::run(
        stop::StopArgs {
            name: a.name.clone(),
            timeout: None,
        },
        ctx,
    )?;
    inventory::remove_record(&home, &a.name)?;
    inventory::bump_generation(&home)?;
    let run = home.run_dir(&a.name);
    for f in ["blueprint.yaml", "supervisor.pid", "control.sock"] {
        let _ = std::fs::remove_file(run.join(f));
    }
    let _ = std::fs::remove_dir(&run);
    if a.delete_state {
        let state = home.state(&a.name);
        if state.exists() {
            std::fs::remove_dir_all(&state)?;
        }
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
