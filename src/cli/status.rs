//! `nemoclaw status [NAME] [--json]`: prints [`crate::reconcile::status::rows`] as a table or
//! as JSON.

use std::time::Duration;

use clap::Args;

use super::{Context, Exit};
use crate::reconcile::status;

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Only this sandbox.
    pub name: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn human_duration(secs: u64) -> String {
    let d = Duration::from_secs(secs);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", d.as_secs() / 60),
        3600..86400 => format!("{}h{}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{}h", secs / 86400, secs % 86400 / 3600),
    }
}

pub fn run(a: StatusArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let home = ctx.home()?;
    let rows = status::rows(&home, a.name.as_deref(), &ctx.flavor.default_agent_type())?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"version": 1, "sandboxes": rows}))?
        );
        return Ok(Exit::Ok);
    }
    if rows.is_empty() {
        println!(
            "No sandboxes deployed. `nemoclaw apply` deploys the blueprints in {}.",
            home.blueprints().display()
        );
        return Ok(Exit::Ok);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let table: Vec<[String; 11]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.agent.clone(),
                format!("v{}", r.version),
                r.commit
                    .as_deref()
                    .map_or("-".into(), |c| c[..c.len().min(12)].to_string()),
                r.state.clone(),
                r.health.unwrap_or("-").to_string(),
                r.uptime_seconds.map_or("-".into(), human_duration),
                r.restarts.to_string(),
                r.last_inference.map_or("-".into(), |t| {
                    format!("{} ago", human_duration(now.saturating_sub(t)))
                }),
                r.cpu_percent.map_or("-".into(), |c| format!("{c:.1}%")),
                r.memory_bytes.map_or("-".into(), |m| {
                    crate::blueprint::quantity::ByteSize(m / (1 << 20) * (1 << 20)).to_string()
                }),
            ]
        })
        .collect();
    let header = [
        "NAME",
        "AGENT",
        "VERSION",
        "COMMIT",
        "STATE",
        "HEALTH",
        "UPTIME",
        "RESTARTS",
        "LAST INFERENCE",
        "CPU",
        "MEMORY",
    ];
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            table
                .iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(&header.map(String::from)));
    for r in &table {
        println!("{}", line(r));
    }
    for r in &rows {
        for text in [&r.message, &r.note].into_iter().flatten() {
            println!("{}: {text}", r.name);
        }
    }
    for r in rows.iter().filter(|r| r.held.is_some()) {
        println!("{}: {}", r.name, r.held.as_deref().unwrap_or_default());
    }
    Ok(Exit::Ok)
}
