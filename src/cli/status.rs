//! `nemoclaw status [NAME] [--json]`: every deployed sandbox with its agent, version, source
//! commit, state, restarts, uptime and memory, from the inventory and the supervisors.

use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::{Context, Exit};
use crate::reconcile::inventory::{Deployed, Inventory};
use crate::supervisor::{self, client::Client, protocol::Request};

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Only this sandbox.
    pub name: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub name: String,
    pub agent: String,
    pub version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// running, starting, backoff, failed, exited, stopped (by the user), down (no supervisor).
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub restarts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
    /// Average CPU use since the agent started, in percent of one core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    /// Unix seconds of the last inference request the gateway answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_inference: Option<u64>,
}

/// Seconds since process `pid` started (from /proc), if it exists.
fn uptime_of(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22 (starttime, clock ticks after boot) counts from the end of the `(comm)` field.
    let after = &stat[stat.rfind(')')? + 2..];
    let start_ticks: u64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()??
        .max(1) as u64;
    // Whole seconds since boot: the integer part of /proc/uptime's first field.
    let boot_uptime: u64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split(['.', ' '])
        .next()?
        .parse()
        .ok()?;
    Some(boot_uptime.saturating_sub(start_ticks / ticks))
}

fn row(home: &crate::home::Home, rec: &Deployed, default_agent: &str) -> Row {
    let mut r = Row {
        name: rec.name.clone(),
        agent: rec
            .blueprint
            .agent
            .kind
            .clone()
            .unwrap_or_else(|| default_agent.to_string()),
        version: rec.version,
        commit: rec.source.commit.clone(),
        state: "down".into(),
        message: None,
        restarts: 0,
        uptime_seconds: None,
        memory_bytes: None,
        pid: None,
        healthy: None,
        cpu_percent: None,
        last_inference: None,
    };
    if supervisor::is_running(home, &rec.name) {
        let status = Client::connect(&home.control_socket(&rec.name))
            .and_then(|mut c| c.request(Request::Status));
        match status.ok().and_then(|resp| resp.status) {
            Some(s) => {
                r.state = serde_json::to_value(s.state)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default();
                r.message = s.message;
                r.restarts = s.restarts;
                r.memory_bytes = s.memory_bytes;
                r.pid = s.pid;
                r.uptime_seconds = s.pid.and_then(uptime_of);
                r.healthy = s.healthy;
                r.cpu_percent = s.cpu_percent;
                r.last_inference = s.last_inference;
            }
            None => r.state = "unresponsive".into(),
        }
    } else if rec.stopped {
        r.state = "stopped".into();
    }
    r
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
    let inv = Inventory::load(&home)?;
    let records: Vec<&Deployed> = inv
        .records
        .iter()
        .filter(|r| a.name.as_ref().is_none_or(|n| *n == r.name))
        .collect();
    if let Some(n) = &a.name {
        if records.is_empty() {
            anyhow::bail!("`{n}` is not a deployed sandbox");
        }
    }
    let rows: Vec<Row> = records
        .iter()
        .map(|r| row(&home, r, ctx.flavor.default_agent_type()))
        .collect();
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
                r.healthy.map_or("-".into(), |h| {
                    if h {
                        "healthy".into()
                    } else {
                        "unhealthy".into()
                    }
                }),
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
    for r in rows.iter().filter(|r| r.message.is_some()) {
        println!("{}: {}", r.name, r.message.as_deref().unwrap_or_default());
    }
    Ok(Exit::Ok)
}
