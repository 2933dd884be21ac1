//! `nemoclaw apply [PLANFILE]`: makes the sandboxes match the blueprints. Asks for `yes` unless
//! `--auto-approve` (or a saved plan is given); refuses a stale saved plan; holds the apply lock;
//! executes in dependency order, each start health-gated; idempotent and crash-safe.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;

use super::plan::{describe_source, prepare_or_report};
use super::source_args::{PlanFlags, SourceArgs};
use super::{Context, Exit, UsageError};
use crate::home::Home;
use crate::reconcile::agents::install_all;
use crate::reconcile::apply::{execute, Origins, Progress};
use crate::reconcile::lifecycle::lock;
use crate::reconcile::plan::Plan;
use crate::reconcile::plan::PlanOptions;
use crate::reconcile::render::render_human;
use crate::reconcile::runtime::{preflight, SupervisorRuntime};
use crate::reconcile::saved::SavedPlan;
use crate::reconcile::upgrade::recover_all;

#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// A plan saved by `nemoclaw plan -o FILE`: applies exactly that, or refuses if stale.
    pub planfile: Option<PathBuf>,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub plan: PlanFlags,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// How long to wait for another apply to finish.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub lock_timeout: Duration,
    /// How long each sandbox may take to come up (the health gate).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
    /// How many independent sandboxes to change at once.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
}

fn confirm() -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(UsageError("apply asks for confirmation, but stdin is not a terminal: pass --auto-approve (or apply a saved plan)".into()).into());
    }
    print!("\nDo you want to apply these changes? Only 'yes' will be accepted: ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}

/// The URL to fetch a saved git plan from. Plans never hold credentials (their URL is
/// redacted), so a source that needs them is given again with `--git`, and must be the same.
fn saved_git_url(saved: &str, given: Option<&str>) -> anyhow::Result<String> {
    use crate::source::git_http::redact;
    match given {
        Some(url) if redact(url) == saved => Ok(url.to_string()),
        Some(url) => bail!(
            "--git {} is not the saved plan's source {saved}",
            redact(url)
        ),
        None if saved.contains("***@") => bail!(
            "the saved plan's git source {saved} needs credentials, which plans never hold: pass the same URL again with --git"
        ),
        None => Ok(saved.to_string()),
    }
}

pub fn run(a: ApplyArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let home = ctx.home()?;
    home.ensure()?;
    let home = Home::at(std::fs::canonicalize(home.root())?);
    let _lock = lock(&home, a.lock_timeout, "nemoclaw apply")?;
    let runtime = SupervisorRuntime {
        home: home.clone(),
        wait: a.wait,
    };
    super::progress::report_recovered(&recover_all(&home, &runtime), ctx.quiet)?;
    let (prepared, approved) = match &a.planfile {
        Some(file) => {
            let saved = SavedPlan::read(file)?;
            let source = match saved.source.kind.as_str() {
                "git" => SourceArgs {
                    dir: None,
                    git: Some(saved_git_url(
                        &saved.source.location,
                        a.source.git.as_deref(),
                    )?),
                    reference: saved
                        .source
                        .commit
                        .clone()
                        .context("saved git plan without a commit")?,
                    path: saved.git_path.clone(),
                },
                _ => SourceArgs {
                    dir: Some(saved.source_dir.clone()),
                    git: None,
                    reference: "main".into(),
                    path: None,
                },
            };
            let opts = PlanOptions {
                prune: saved.prune,
                allow_empty: saved.allow_empty,
                targets: saved.targets.clone(),
                replace: saved.replace.clone(),
                retry: saved.retry.clone(),
            };
            let p = prepare_or_report(ctx, &source, opts)?;
            if p.loaded.fingerprint != saved.fingerprint {
                bail!("the saved plan {} is stale: the blueprints changed since it was made; run `nemoclaw plan` again", file.display());
            }
            if p.inventory.generation != saved.inventory_generation {
                bail!(
                    "the saved plan {} is stale: the deployed sandboxes changed since it was made (generation {} → {}); run `nemoclaw plan` again",
                    file.display(),
                    saved.inventory_generation,
                    p.inventory.generation
                );
            }
            (p, true)
        }
        None => (
            prepare_or_report(ctx, &a.source, a.plan.options())?,
            a.auto_approve,
        ),
    };
    let plan = &prepared.plan;
    if !plan.has_changes() {
        if !ctx.quiet {
            println!("No changes. Sandboxes match the blueprints.");
        }
        return Ok(Exit::Ok);
    }
    if !ctx.quiet || !approved {
        print!(
            "{}",
            render_human(
                plan,
                Some(&describe_source(&prepared)),
                std::io::stdout().is_terminal()
            )
        );
    }
    if !approved && !confirm()? {
        println!("Apply cancelled.");
        return Ok(Exit::Failure);
    }
    preflight(&home, plan)?;
    let quiet = ctx.quiet;
    install_agents(&home, plan, &prepared.origins(), quiet)?;
    let reporter = super::progress::Reporter::new(quiet, std::io::stderr().is_terminal());
    let progress = |p: Progress<'_>| reporter.report(p);
    let outcomes = execute(
        &home,
        plan,
        &prepared.origins(),
        &runtime,
        a.parallel,
        &progress,
    );
    reporter.finish();
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    if failed > 0 {
        eprintln!("Apply incomplete: {failed} of {} changes failed (the rest were applied; run apply again after fixing).", outcomes.len());
        return Ok(Exit::Failure);
    }
    if !quiet {
        println!("Apply complete: {} changes applied.", outcomes.len());
    }
    Ok(Exit::Ok)
}

/// The install phase: every agent the plan starts is installed before anything changes.
fn install_agents(home: &Home, plan: &Plan, origins: &Origins, quiet: bool) -> anyhow::Result<()> {
    let mut current = String::new();
    let t = std::time::Instant::now();
    install_all(home, plan, origins, &mut |what, line| {
        if quiet {
            return;
        }
        if current != what {
            eprintln!("Installing {what} in a setup sandbox...");
            current = what.to_string();
        }
        eprintln!("  | {line}");
    })?;
    if !current.is_empty() && !quiet {
        eprintln!("Installed {current} in {:.0?}.", t.elapsed());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::saved_git_url;

    #[test]
    fn a_saved_git_source_with_credentials_takes_the_same_url_again() {
        let saved = "https://***@git.example.com/org/agents.git";
        let real = "https://bot:s3cret@git.example.com/org/agents.git";
        assert_eq!(saved_git_url(saved, Some(real)).unwrap(), real);
        let e = saved_git_url(saved, None).unwrap_err().to_string();
        assert!(e.contains("pass the same URL again with --git"), "{e}");
        let e = saved_git_url(saved, Some("https://bot:s3cret@git.example.com/other.git"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("is not the saved plan's source") && !e.contains("s3cret"),
            "{e}"
        );
        let public = "https://git.example.com/org/agents.git";
        assert_eq!(saved_git_url(public, None).unwrap(), public);
    }
}
