//! The agent's command: from `run`'s command line or the blueprint's agent, and its workdir.

use crate::blueprint::types::{defaults, Blueprint};

use super::checks::{check_inside_path, CheckError};
use super::{field_err, SpecError, NEMOCLAW_BIN};

/// The agent's command and the field it came from (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub argv: Vec<String>,
    /// `command` (from `run`), `agent.type` (the demo agent) or `agent.command`.
    pub origin: &'static str,
}

/// The agent's working directory inside the sandbox.
pub fn workdir(bp: &Blueprint) -> Result<String, SpecError> {
    let workdir = bp
        .agent
        .workdir
        .clone()
        .unwrap_or_else(|| defaults::WORKDIR.to_string());
    check_inside_path(&workdir).map_err(|reason| SpecError::check("agent.workdir", reason))?;
    Ok(workdir)
}

/// `command` (from `nemoclaw run BP -- CMD`) when given, else the blueprint's agent.
pub fn command(bp: &Blueprint, command: Option<&Vec<String>>) -> Result<Command, SpecError> {
    let origin = match (command, bp.agent.kind.as_deref()) {
        (Some(_), _) => "command",
        (None, Some("demo")) => "agent.type",
        _ => "agent.command",
    };
    let argv = match command {
        Some(cmd) if !cmd.is_empty() => cmd.clone(),
        Some(_) => return Err(field_err("command", "the command is empty")),
        None => agent_argv(bp)?,
    };
    Ok(Command { argv, origin })
}

/// The blueprint's own agent command (when `run` gives none).
fn agent_argv(bp: &Blueprint) -> Result<Vec<String>, SpecError> {
    let kind = bp.agent.kind.as_deref().unwrap_or(defaults::AGENT_TYPE);
    let mut argv = match kind {
        "command" => match &bp.agent.command {
            Some(c) if !c.trim().is_empty() => vec![c.clone()],
            _ => {
                return Err(field_err(
                    "agent.command",
                    "`type: command` needs a command (the program to run inside the sandbox)",
                ))
            }
        },
        "demo" => vec![NEMOCLAW_BIN.to_string(), "demo-agent".to_string()],
        other => {
            if let Some(c) = &bp.agent.command {
                vec![c.clone()]
            } else {
                return Err(field_err(
                    "agent.type",
                    format!("agent type `{other}` needs its plugin, which this release cannot run yet: set agent.command, or pass a command after `--`"),
                ));
            }
        }
    };
    argv.extend(bp.agent.args.iter().cloned());
    Ok(argv)
}

/// No argument may hold a NUL byte (checked after the environment, as the field is shared).
pub fn check_argv(argv: &[String]) -> Result<(), SpecError> {
    if argv.iter().any(|a| a.contains('\0')) {
        return Err(SpecError::check("agent.command", CheckError::Nul));
    }
    Ok(())
}
