//! `nemoclaw checkpoint NAME [--json]`: asks the sandbox's supervisor for a checkpoint of the
//! running agent's state now ([`crate::supervisor::checkpoint::request_now`]) and prints its id,
//! size and how long the agent was frozen.

use clap::Args;

use super::{Context, Exit};
use crate::supervisor::checkpoint;

#[derive(Debug, Clone, Args)]
pub struct CheckpointArgs {
    /// The sandbox name.
    pub name: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: CheckpointArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let info = checkpoint::request_now(&ctx.home()?, &a.name)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(Exit::Ok);
    }
    println!(
        "checkpoint {}: {} files, {} bytes, agent frozen for {} ms",
        info.id, info.files, info.bytes, info.frozen_ms
    );
    for id in &info.pruned {
        println!("removed old checkpoint {id}");
    }
    Ok(Exit::Ok)
}
