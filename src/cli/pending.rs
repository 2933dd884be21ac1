//! Commands listed in `--help` whose implementation has not landed yet: they say so and exit 64.

use clap::Args;

use super::{Exit, UsageError};

/// Accepts any arguments, so `--help` lists the command and calling it explains its state.
#[derive(Debug, Clone, Args)]
pub struct PendingArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub args: Vec<String>,
}

pub fn not_yet(command: &str, part: &str) -> anyhow::Result<Exit> {
    Err(UsageError(format!(
        "`nemoclaw {command}` is not implemented in this release yet (it comes with {part}); `nemoclaw validate` and `nemoclaw schema` work today"
    ))
    .into())
}
