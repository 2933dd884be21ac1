//! `nemoclaw migrate NAME [--to N] [--dry-run]`, `nemoclaw rollback NAME [--to ID]` and
//! `nemoclaw snapshots NAME [--json]`: the state of one sandbox moved by hand.

use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;

use super::source_args::SourceArgs;
use super::{Context, Exit, JsonFlag};
use crate::blueprint::set::LoadOptions;
use crate::migrate::snapshot;
use crate::reconcile::dry_run::dry_run;
use crate::reconcile::inventory::Inventory;
use crate::reconcile::plan::DryRun;
use crate::reconcile::rollback::{self, check_target};
use crate::reconcile::runtime::SupervisorRuntime;

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// The deployed sandbox.
    pub name: String,
    /// The version to migrate to (default: the source blueprint's version).
    #[arg(long)]
    pub to: Option<u32>,
    /// Run the scripts on a scratch copy and show what they would change.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub source: SourceArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RollbackArgs {
    /// The deployed sandbox.
    pub name: String,
    /// The snapshot to restore (its id, or a unique prefix); default the newest.
    #[arg(long, value_name = "ID")]
    pub to: Option<String>,
    /// How long the restored version may take to come up.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct SnapshotsArgs {
    /// The sandbox.
    pub name: String,
    #[command(flatten)]
    pub json: JsonFlag,
}

pub fn migrate(a: MigrateArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let home = ctx.home()?;
    let load = LoadOptions {
        default_agent_type: ctx.flavor.default_agent_type(),
        plugin_dirs: vec![home.plugins()],
    };
    let loaded = crate::source::load(&a.source.spec(&home), &home.cache(), &load)?;
    if loaded.set.error_count() > 0 {
        bail!(
            "the source has {} error(s): run `nemoclaw validate` and fix them first",
            loaded.set.error_count()
        );
    }
    let entry = loaded
        .set
        .blueprints
        .iter()
        .find(|e| e.blueprint.metadata.name == a.name)
        .with_context(|| format!("the source has no blueprint named `{}`", a.name))?;
    let base = crate::reconcile::prepare::base_dir(&entry.path);
    let to = a.to.unwrap_or(entry.blueprint.metadata.version);
    if a.dry_run {
        let rec = Inventory::load(&home)?
            .get(&a.name)
            .cloned()
            .with_context(|| format!("`{}` is not a deployed sandbox", a.name))?;
        check_target(&a.name, rec.version, to, entry.blueprint.metadata.version)?;
        let mut bp = entry.blueprint.clone();
        bp.metadata.version = to;
        return Ok(print_dry_run(
            &dry_run(&home, &a.name, &bp, &base, rec.version),
            ctx,
        ));
    }
    let rt = SupervisorRuntime {
        home: home.clone(),
        wait: Duration::from_secs(30),
    };
    let t = rollback::migrate(&home, &rt, &entry.blueprint, &base, to)?;
    if !ctx.quiet {
        println!(
            "Migrated {} to v{to} in {:.2}s (snapshot {:.2}s, scripts {:.2}s); it stays stopped: `nemoclaw start {}` runs it.",
            a.name,
            t.downtime_ms as f64 / 1000.0,
            t.snapshot_ms as f64 / 1000.0,
            t.migrate_ms as f64 / 1000.0,
            a.name
        );
    }
    Ok(Exit::Ok)
}

fn print_dry_run(d: &DryRun, ctx: &Context) -> Exit {
    match d {
        DryRun::NoState => println!("No state yet: nothing to migrate."),
        DryRun::Ok { diff } => {
            if !ctx.quiet {
                println!("Dry run on a scratch copy of the state (the real state is untouched):");
            }
            print!("{}", crate::migrate::preview::render(diff, "  "));
        }
        DryRun::Failed { error } => {
            eprintln!("error: the dry run failed (the real state is untouched): {error}");
            return Exit::Failure;
        }
    }
    Exit::Ok
}

pub fn rollback(a: RollbackArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let home = ctx.home()?;
    let rt = SupervisorRuntime {
        home: home.clone(),
        wait: a.wait,
    };
    let r = rollback::rollback(&home, &rt, &a.name, a.to.as_deref())?;
    if !ctx.quiet {
        println!(
            "Rolled {} back to v{} from snapshot {} (it was at v{}){}.",
            a.name,
            r.version,
            r.snapshot.id,
            r.from_version,
            if r.started {
                "; it is running"
            } else {
                "; it stays stopped"
            }
        );
        if r.version != r.from_version {
            println!("apply leaves it at v{} until its blueprint changes (plan shows it under \"Left alone\").", r.version);
        }
    }
    Ok(Exit::Ok)
}

pub fn snapshots(a: SnapshotsArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let home = ctx.home()?;
    let list = snapshot::list(&home.snapshots(&a.name))?;
    if a.json.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(Exit::Ok);
    }
    if list.is_empty() {
        if !ctx.quiet {
            println!("No snapshots of {} (they are taken before each upgrade, and by lifecycle.checkpoint).", a.name);
        }
        return Ok(Exit::Ok);
    }
    println!(
        "{:<34} {:>7} {:<10} {:>7} {:>10}",
        "ID", "VERSION", "KIND", "FILES", "SIZE"
    );
    for s in &list {
        println!(
            "{:<34} {:>7} {:<10} {:>7} {:>10}",
            s.id,
            format!("v{}", s.version),
            format!("{:?}", s.kind).to_lowercase(),
            s.files,
            human_bytes(s.bytes)
        );
    }
    Ok(Exit::Ok)
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
