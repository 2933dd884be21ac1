//! `nemoclaw __setup REQUEST` (hidden): runs one plugin's setup in its sandbox
//! ([`crate::supervisor::setup`]); `plugin::install` starts it and reads its output.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use super::{Context, Exit};
use crate::plugin::install::SetupRequest;

#[derive(Debug, Clone, Args)]
pub struct SetupArgs {
    /// The request file `plugin::install` wrote.
    pub request: PathBuf,
}

pub fn run(a: SetupArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let text = std::fs::read(&a.request).with_context(|| a.request.display().to_string())?;
    let req: SetupRequest = serde_json::from_slice(&text)
        .with_context(|| format!("{}: not a setup request", a.request.display()))?;
    let home = ctx.home()?;
    let outcome = crate::supervisor::setup::run(&home, &req)?;
    std::process::exit(outcome.code);
}
