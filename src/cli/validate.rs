//! `nemoclaw validate [PATH...]`: checks blueprints without looking at the host, so CI gives
//! the same answer as the target. Every file is checked and every error reported in one run.
//! Exit 0 when valid, 1 on any error, 64 on usage errors.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::{Context, Exit, Format, UsageError};
use crate::blueprint::diag::{render_github, render_human};
use crate::blueprint::set::{load_paths, LoadOptions, SourceSet};

#[derive(Debug, Clone, Args)]
pub struct ValidateArgs {
    /// Blueprint files or directories (a directory means its top-level *.yaml/*.yml files).
    /// Default: the home's blueprints/.
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
    /// Same as --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

pub fn run(a: ValidateArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let paths = if a.paths.is_empty() {
        let dir = ctx.home()?.blueprints();
        if !dir.is_dir() {
            return Err(UsageError(format!(
                "no paths given and {} does not exist: pass blueprint files or directories, or run `nemoclaw init`",
                dir.display()
            ))
            .into());
        }
        vec![dir]
    } else {
        a.paths.clone()
    };
    let opts = LoadOptions {
        default_agent_type: ctx.flavor.default_agent_type(),
        plugin_dirs: ctx.home().map(|h| h.plugins()).into_iter().collect(),
    };
    let set = load_paths(&paths, &opts);
    let format = if a.json { Format::Json } else { a.format };
    match format {
        Format::Human => print_human(&set, ctx),
        Format::Json => println!("{}", serde_json::to_string_pretty(&json_report(&set))?),
        Format::Github => print!("{}", render_github(&set.diagnostics)),
    }
    Ok(if set.error_count() > 0 {
        Exit::Failure
    } else {
        Exit::Ok
    })
}

fn print_human(set: &SourceSet, ctx: &Context) {
    let out = render_human(&set.diagnostics, |p| set.texts.get(p).map(|t| &**t));
    if !out.is_empty() {
        eprint!("{out}");
    }
    if ctx.verbose > 0 {
        for s in &set.skipped {
            eprintln!("skipped {} (not a nemoclaw document)", s.display());
        }
    }
    let (errors, warnings) = (set.error_count(), set.warning_count());
    let files = plural(set.files_checked, "file");
    if errors == 0 {
        if !ctx.quiet {
            let valid = plural(set.blueprints.len(), "blueprint");
            let warn = if warnings > 0 {
                format!(", {}", plural(warnings, "warning"))
            } else {
                String::new()
            };
            println!("{files} checked: {valid} valid{warn}.");
        }
    } else {
        eprintln!(
            "{files} checked: {}, {}.",
            plural(errors, "error"),
            plural(warnings, "warning")
        );
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// The `--format json` document (versioned).
pub fn json_report(set: &SourceSet) -> serde_json::Value {
    json!({
        "version": 1,
        "valid": set.error_count() == 0,
        "filesChecked": set.files_checked,
        "blueprints": set.blueprints.iter().map(|e| json!({
            "file": e.path,
            "name": e.blueprint.metadata.name,
            "version": e.blueprint.metadata.version,
        })).collect::<Vec<_>>(),
        "summary": {"errors": set.error_count(), "warnings": set.warning_count()},
        "diagnostics": set.diagnostics,
    })
}
