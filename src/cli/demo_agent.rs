//! `nemoclaw demo-agent` (hidden): runs [`crate::plugin::demo`], the quickstart's agent.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::Exit;
use crate::plugin::demo::{self, DemoOptions};

#[derive(Debug, Clone, Args)]
pub struct DemoAgentArgs {
    /// Where the agent keeps its state.
    #[arg(long, env = "NEMOCLAW_STATE_DIR", default_value = "/workspace/state")]
    pub state_dir: PathBuf,
    /// Seconds between ticks.
    #[arg(long, default_value_t = 30)]
    pub interval: u64,
    /// Do one tick and exit.
    #[arg(long)]
    pub once: bool,
    /// The model to ask.
    #[arg(long, env = "NEMOCLAW_DEMO_MODEL", default_value = "mock-1")]
    pub model: String,
}

pub fn run(a: DemoAgentArgs) -> anyhow::Result<Exit> {
    let replied = demo::run(&DemoOptions {
        state_dir: a.state_dir,
        interval: Duration::from_secs(a.interval),
        once: a.once,
        model: a.model,
    })?;
    Ok(if replied { Exit::Ok } else { Exit::Failure })
}
