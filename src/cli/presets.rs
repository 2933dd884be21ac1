//! `nemoclaw presets list|show NAME`: the egress presets (built-in, and the user's
//! `presets/<name>.yaml` files, which replace a built-in of the same name).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{Context, Exit, UsageError};
use crate::policy::domain::parse_rule;
use crate::policy::presets::{all_presets, Preset};

#[derive(Debug, Clone, Args)]
pub struct PresetsArgs {
    #[command(subcommand)]
    pub command: PresetsCommand,
    /// Directory of user presets (default: the home's presets/).
    #[arg(long, global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum PresetsCommand {
    /// List every preset with its description.
    List,
    /// Show the domains (and ports) a preset allows.
    Show {
        /// The preset's name, e.g. `github`.
        name: String,
    },
}

/// The domain rules of a preset as `allowedDomains` would show them (`host` or `host (ports ...)`).
fn rules(p: &Preset) -> Vec<String> {
    p.domains
        .iter()
        .map(|d| parse_rule(d).map_or_else(|e| format!("invalid: {e}"), |s| s.to_string()))
        .collect()
}

pub fn run(a: PresetsArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let dir = match a.dir {
        Some(d) => d,
        None => ctx.home()?.presets(),
    };
    let presets = all_presets(Some(&dir))?;
    match a.command {
        PresetsCommand::List => {
            if a.json {
                let list: Vec<_> = presets
                    .values()
                    .map(|p| serde_json::json!({"name": p.name, "description": p.description, "source": p.source, "domains": rules(p)}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let width = presets.keys().map(String::len).max().unwrap_or(0);
                for p in presets.values() {
                    let user = if p.source == "builtin" { "" } else { " [user]" };
                    println!("{:width$}  {}{user}", p.name, p.description);
                }
            }
        }
        PresetsCommand::Show { name } => {
            let Some(p) = presets.get(&name) else {
                let known: Vec<&str> = presets.keys().map(String::as_str).collect();
                let hint = match known.iter().max_by(|x, y| {
                    strsim::jaro_winkler(x, &name).total_cmp(&strsim::jaro_winkler(y, &name))
                }) {
                    Some(best) if strsim::jaro_winkler(best, &name) > 0.8 => {
                        format!(" (did you mean `{best}`?)")
                    }
                    _ => String::new(),
                };
                return Err(UsageError(format!(
                    "unknown preset `{name}`{hint}: `nemoclaw presets list` shows them all"
                ))
                .into());
            };
            if a.json {
                let v = serde_json::json!({"name": p.name, "description": p.description, "source": p.source, "domains": rules(p)});
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("# {}: {} ({})", p.name, p.description, p.source);
                for r in rules(p) {
                    println!("{r}");
                }
            }
        }
    }
    Ok(Exit::Ok)
}
