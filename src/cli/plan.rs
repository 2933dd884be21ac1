//! `nemoclaw plan`: what `apply` would change, with reasons and blueprint diffs.
//! `--detailed-exitcode`: 0 no changes, 1 error, 2 changes. `-o FILE` saves the plan for
//! `nemoclaw apply FILE`.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;

use super::source_args::{PlanFlags, SourceArgs};
use super::{Context, Exit};
use crate::blueprint::diag::render_human as render_diags;
use crate::blueprint::set::LoadOptions;
use crate::reconcile::plan::PlanOptions;
use crate::reconcile::prepare::{prepare, PrepareError, Prepared};
use crate::reconcile::render::{render_human, render_json};
use crate::reconcile::saved::{SavedPlan, SAVED_PLAN_FORMAT};

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub plan: PlanFlags,
    /// Exit 2 when there are changes, 0 when there are none.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Save the plan for `nemoclaw apply FILE`.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print the plan as versioned JSON.
    #[arg(long)]
    pub json: bool,
}

/// Prepares a plan, showing blueprint diagnostics on failure. Shared with apply and watch.
pub fn prepare_or_report(
    ctx: &Context,
    source: &SourceArgs,
    opts: PlanOptions,
) -> anyhow::Result<Prepared> {
    let home = ctx.home()?;
    let load_opts = LoadOptions {
        default_agent_type: ctx.flavor.default_agent_type(),
        plugin_dirs: vec![home.plugins()],
    };
    match prepare(&home, &source.spec(&home), &load_opts, opts) {
        Ok(p) => Ok(p),
        Err((e, loaded)) => {
            if let (PrepareError::Invalid { .. }, Some(l)) = (&e, &loaded) {
                eprint!(
                    "{}",
                    render_diags(&l.set.diagnostics, |p| l.set.texts.get(p).map(|t| &**t))
                );
            }
            Err(e.into())
        }
    }
}

/// A one-line description of the source for people.
pub fn describe_source(p: &Prepared) -> String {
    let s = &p.loaded.source;
    match &s.commit {
        Some(c) => format!("{} at {}", s.location, &c[..c.len().min(12)]),
        None => s.location.clone(),
    }
}

pub fn run(a: PlanArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let prepared = prepare_or_report(ctx, &a.source, a.plan.options())?;
    let plan = &prepared.plan;
    if let Some(out) = &a.out {
        let saved = SavedPlan {
            format: SAVED_PLAN_FORMAT,
            source: prepared.loaded.source.clone(),
            source_dir: prepared.loaded.dir.clone(),
            git_path: a.source.path.clone(),
            fingerprint: prepared.loaded.fingerprint.clone(),
            inventory_generation: prepared.inventory.generation,
            prune: prepared.prune,
            allow_empty: a.plan.allow_empty,
            targets: a.plan.target.clone(),
            replace: a.plan.replace.clone(),
            retry: a.plan.retry.clone(),
            desired: prepared
                .loaded
                .set
                .blueprints
                .iter()
                .map(|e| e.blueprint.clone())
                .collect(),
        };
        let json = serde_json::to_vec_pretty(&saved)?;
        crate::home::write_atomic(out, &json, 0o600)?;
    }
    if a.json {
        let source = serde_json::to_value(&prepared.loaded.source)?;
        println!(
            "{}",
            serde_json::to_string_pretty(&render_json(
                plan,
                &source,
                prepared.inventory.generation
            ))?
        );
    } else if !ctx.quiet || plan.has_changes() {
        let color = std::io::stdout().is_terminal();
        print!(
            "{}",
            render_human(plan, Some(&describe_source(&prepared)), color)
        );
        if let Some(out) = &a.out {
            println!(
                "Saved the plan to {}: `nemoclaw apply {}` applies exactly this.",
                out.display(),
                out.display()
            );
        }
    }
    Ok(if a.detailed_exitcode && plan.has_changes() {
        Exit::Changes
    } else {
        Exit::Ok
    })
}
