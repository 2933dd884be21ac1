//! `nemoclaw exec NAME -- CMD [ARGS...]`: runs [`crate::supervisor::exec::exec`] and exits
//! with the command's code.

use clap::Args;

use super::{Context, Exit};
use crate::supervisor::exec;

#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// The sandbox name.
    pub name: String,
    /// The command (after `--`).
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub fn run(a: ExecArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let code = exec::exec(&ctx.home()?, &a.name, &a.command)?;
    std::process::exit(code);
}
