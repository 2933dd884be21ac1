//! The status of deployed sandboxes: each one's agent, version, source commit, state,
//! restarts, uptime, health, CPU, memory and last inference, from the inventory and the
//! supervisors' control sockets.

use serde::Serialize;

use super::inventory::{Deployed, Inventory, InventoryError};
use crate::home::Home;
use crate::supervisor::{self, client::Client, protocol::Request};

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error("`{0}` is not a deployed sandbox")]
    NotDeployed(String),
}

/// One row per deployed sandbox (only `name`'s when given), in inventory order. Sandboxes
/// whose blueprint names no agent type show `default_agent`.
pub fn rows(home: &Home, name: Option<&str>, default_agent: &str) -> Result<Vec<Row>, StatusError> {
    let inv = Inventory::load(home)?;
    let records: Vec<&Deployed> = inv
        .records
        .iter()
        .filter(|r| name.is_none_or(|n| n == r.name))
        .collect();
    if let Some(n) = name {
        if records.is_empty() {
            return Err(StatusError::NotDeployed(n.to_string()));
        }
    }
    Ok(records
        .iter()
        .map(|r| row(home, r, default_agent))
        .collect())
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
    /// What the supervisor did that the user should know (a checkpoint restored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub restarts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
    /// `healthy` or `unhealthy` once the health check (the blueprint's, else the plugin's) has
    /// a result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<&'static str>,
    /// Average CPU use since the agent started, in percent of one core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    /// Unix seconds of the last inference request the gateway answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_inference: Option<u64>,
    /// Why apply keeps it at this version (a failed upgrade, a rollback), or an interrupted
    /// upgrade waiting for the next apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
}

/// The hold on `rec`, or the interrupted upgrade of it, for people.
fn held_message(home: &Home, rec: &Deployed) -> Option<String> {
    match crate::migrate::journal::read(home, &rec.name) {
        Ok(Some(j)) => Some(format!(
            "an upgrade v{}→v{} was interrupted: the next apply (or start) rolls it back",
            j.from, j.to
        )),
        Err(e) => Some(crate::error_chain(&e)),
        Ok(None) => rec.hold.as_ref().map(|h| h.message.clone()),
    }
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

fn row(home: &Home, rec: &Deployed, default_agent: &str) -> Row {
    let mut r = Row {
        name: rec.name.clone(),
        agent: rec.blueprint.agent.type_or(default_agent).to_string(),
        version: rec.version,
        commit: rec.source.commit.clone(),
        state: "down".into(),
        message: None,
        note: None,
        restarts: 0,
        uptime_seconds: None,
        memory_bytes: None,
        pid: None,
        healthy: None,
        health: None,
        cpu_percent: None,
        last_inference: None,
        held: held_message(home, rec),
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
                r.note = s.note;
                r.restarts = s.restarts;
                r.memory_bytes = s.memory_bytes;
                r.pid = s.pid;
                r.uptime_seconds = s.pid.and_then(uptime_of);
                r.healthy = s.healthy;
                r.health = s.healthy.map(|h| if h { "healthy" } else { "unhealthy" });
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
