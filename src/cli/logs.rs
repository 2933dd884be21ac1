//! `nemoclaw logs NAME [-f] [--since 1h] [--kind agent|inference|egress|supervisor]`: prints
//! a sandbox's logs, read by [`crate::observe::logs::Tail`].

use std::io::Write;
use std::time::Duration;

use clap::Args;

use super::{Context, Exit};
use crate::observe::logs::{cutoff, is_recent, LogKind, LogsError, Tail};

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

pub fn run(a: LogsArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let mut tail = Tail::open(&ctx.home()?, &a.name, a.kind, a.follow)?;
    let cutoff = cutoff(a.since);
    let mut out = std::io::stdout().lock();
    loop {
        match tail.read_new()? {
            Some(lines) => {
                for line in lines.iter().filter(|l| is_recent(l, cutoff)) {
                    writeln!(out, "{line}")?;
                }
                out.flush()?;
            }
            None if !a.follow => return Err(LogsError::NotYet(tail.path().to_path_buf()).into()),
            None => {}
        }
        if !a.follow {
            return Ok(Exit::Ok);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
