//! `nemoclaw logs NAME [-f] [--since 1h] [--kind agent|inference|egress|supervisor]`: a
//! sandbox's logs from `logs/<name>/`. JSON-lines logs are filtered by their time field with
//! `--since`; `-f` follows the file as it grows (and across truncation).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use clap::{Args, ValueEnum};

use super::{Context, Exit};
use crate::home;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogKind {
    Agent,
    Inference,
    Egress,
    Supervisor,
}

impl LogKind {
    fn file(self) -> &'static str {
        match self {
            LogKind::Agent => home::AGENT_LOG,
            LogKind::Inference => home::INFERENCE_LOG,
            LogKind::Egress => home::EGRESS_LOG,
            LogKind::Supervisor => home::SUPERVISOR_LOG,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// The sandbox name.
    pub name: String,
    /// Keep printing as the log grows.
    #[arg(short, long)]
    pub follow: bool,
    /// Only lines newer than this (JSON-lines logs), e.g. 10m, 1h.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
    /// Which log.
    #[arg(long, value_enum, default_value = "agent")]
    pub kind: LogKind,
}

/// The time of a JSON log line, in seconds since the epoch: `ts` (seconds) or `time` (RFC 3339).
fn line_time(line: &str) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if let Some(t) = v.get("ts").and_then(|t| t.as_f64()) {
        return Some(t);
    }
    let s = v.get("time").or_else(|| v.get("timestamp"))?.as_str()?;
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z'))
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
}

pub fn run(a: LogsArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let home = ctx.home()?;
    let dir = home.logs(&a.name);
    if !dir.is_dir() {
        bail!(
            "no logs for `{}` in {} (is it deployed? see `nemoclaw status`)",
            a.name,
            dir.display()
        );
    }
    let path: PathBuf = dir.join(a.kind.file());
    let cutoff = a.since.map(|s| {
        SystemTime::now()
            .checked_sub(s)
            .unwrap_or(UNIX_EPOCH)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
    });
    let keep = |line: &str| match cutoff {
        None => true,
        Some(c) => line_time(line).is_none_or(|t| t >= c),
    };
    let mut out = std::io::stdout().lock();
    let mut pos = 0u64;
    loop {
        if let Ok(mut f) = std::fs::File::open(&path) {
            let len = f.metadata()?.len();
            if len < pos {
                pos = 0; // truncated or rotated: start over
            }
            f.seek(SeekFrom::Start(pos))?;
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)?;
            // Only whole lines; a partial last line waits for its end.
            let upto = if a.follow {
                buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
            } else {
                buf.len()
            };
            for line in String::from_utf8_lossy(&buf[..upto]).lines() {
                if keep(line) {
                    writeln!(out, "{line}")?;
                }
            }
            pos += upto as u64;
            out.flush()?;
        } else if !a.follow {
            bail!("{} does not exist yet", path.display());
        }
        if !a.follow {
            return Ok(Exit::Ok);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
