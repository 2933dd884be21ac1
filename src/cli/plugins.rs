//! `nemoclaw plugins list|show NAME`: the agent types there are (built in, the home's
//! `plugins/`, a source's `plugins/`) and where each comes from.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use super::{Context, Exit, UsageError};
use crate::blueprint::plugin::PluginManifest;
use crate::plugin::registry::{list, Listed, Search};

#[derive(Debug, Clone, Args)]
pub struct PluginsArgs {
    #[command(subcommand)]
    pub command: PluginsCommand,
    /// A source directory whose `plugins/` to include (they win over the home's and the
    /// built-in ones).
    #[arg(long, global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum PluginsCommand {
    /// List every agent plugin with its package and where it comes from.
    List,
    /// Show what a plugin installs, runs, keeps and needs.
    Show {
        /// The plugin's name (the blueprint's `agent.type`), e.g. `openclaw`.
        name: String,
    },
}

pub fn run(a: PluginsArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let home_plugins = ctx.home()?.plugins();
    let search = Search {
        source_dir: a.dir.as_deref(),
        home_plugins: Some(&home_plugins),
    };
    let all = list(&search)?;
    match a.command {
        PluginsCommand::List if a.json => {
            let v: Vec<_> = all.iter().map(summary).collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        PluginsCommand::List => print_table(&all),
        PluginsCommand::Show { name } => {
            let Some(l) = all.iter().find(|l| l.plugin.manifest.metadata.name == name) else {
                let names: Vec<&str> = all
                    .iter()
                    .map(|l| l.plugin.manifest.metadata.name.as_str())
                    .collect();
                return Err(UsageError(format!(
                    "unknown plugin `{name}`: there are {} (`nemoclaw plugins list`)",
                    names.join(", ")
                ))
                .into());
            };
            if a.json {
                let mut v = summary(l);
                v["manifest"] = serde_json::to_value(&l.plugin.manifest)?;
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", describe(l));
            }
        }
    }
    Ok(Exit::Ok)
}

fn package(m: &PluginManifest) -> String {
    m.package.as_ref().map_or("-".into(), |p| {
        format!("{} {}@{}", p.registry.preset(), p.name, p.default_version)
    })
}

fn summary(l: &Listed) -> serde_json::Value {
    let m = &l.plugin.manifest;
    json!({
        "name": m.metadata.name,
        "description": m.metadata.description,
        "package": m.package,
        "origin": l.plugin.origin.describe(),
        "shadows": l.shadows.iter().map(|o| o.describe()).collect::<Vec<_>>(),
    })
}

fn print_table(all: &[Listed]) {
    let rows: Vec<[String; 4]> = all
        .iter()
        .map(|l| {
            let m = &l.plugin.manifest;
            [
                m.metadata.name.clone(),
                package(m),
                l.plugin.origin.describe(),
                m.metadata.description.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let header = ["NAME", "PACKAGE", "FROM", "DESCRIPTION"];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].len())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2) = (width(0), width(1), width(2));
    println!(
        "{:w0$}  {:w1$}  {:w2$}  {}",
        header[0], header[1], header[2], header[3]
    );
    for r in rows {
        println!("{:w0$}  {:w1$}  {:w2$}  {}", r[0], r[1], r[2], r[3]);
    }
}

/// `plugins show`: the four steps and what the plugin owns and needs.
fn describe(l: &Listed) -> String {
    let m = &l.plugin.manifest;
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let mut out = format!(
        "{}: {}\n",
        m.metadata.name,
        m.metadata.description.as_deref().unwrap_or("")
    );
    out += &format!("  from:      {}\n", l.plugin.origin.describe());
    for o in &l.shadows {
        out += &format!("  hides:     {}\n", o.describe());
    }
    out += &format!("  package:   {}\n", package(m));
    match &m.setup {
        Some(s) => {
            out += &format!(
                "  setup:     a setup sandbox, egress {}; creates {}\n",
                list(&s.egress),
                s.creates.as_deref().unwrap_or("-")
            )
        }
        None => out += "  setup:     none (nothing to install)\n",
    }
    let cmd = if m.start.command.is_empty() {
        "the blueprint's agent.command".to_string()
    } else {
        m.start.command.join(" ")
    };
    out += &format!("  start:     {cmd}\n");
    out += &format!("  PATH adds: {}\n", list(&m.start.path));
    out += &format!(
        "  env:       {}\n",
        list(&m.start.env.keys().cloned().collect::<Vec<_>>())
    );
    out += &format!("  egress:    {} at run time\n", list(&m.start.egress));
    for f in &m.start.files {
        out += &format!(
            "  renders:   /workspace/state/{} from {}\n",
            f.path, f.template
        );
    }
    out += &format!(
        "  stop:      {}, exit codes {:?} are clean\n",
        m.stop.signal, m.stop.exit_codes
    );
    let health = match &m.health_check {
        Some(h) => match (&h.http, &h.exec) {
            (Some(http), _) => format!("http :{}{}", http.port, http.path),
            (None, Some(e)) => format!("exec {}", e.join(" ")),
            _ => "-".into(),
        },
        None => "the blueprint's".into(),
    };
    out += &format!("  health:    {health}\n");
    out += &format!(
        "  state:     {}\n",
        list(
            &m.state
                .iter()
                .map(|s| format!("/workspace/state/{s}"))
                .collect::<Vec<_>>()
        )
    );
    out += &format!(
        "  ports:     {}\n",
        list(&m.ports.iter().map(u16::to_string).collect::<Vec<_>>())
    );
    out
}
