//! The agent's command: from `run`'s command line or the blueprint's agent, and its workdir.

use crate::blueprint::types::{defaults, Blueprint};

use super::checks::{check_inside_path, CheckError};
use super::{field_err, AgentLaunch, SpecError};

/// The agent's command and the field it came from (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub argv: Vec<String>,
    /// `command` (from `run`), `agent.type` (the plugin's command) or `agent.command`.
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

/// `command` (from `nemoclaw run BP -- CMD`) when given, else the agent's plugin's command,
/// else the blueprint's `agent.command`.
pub fn command(
    bp: &Blueprint,
    command: Option<&Vec<String>>,
    agent: Option<&AgentLaunch>,
) -> Result<Command, SpecError> {
    let plugin_argv = agent.map(|a| a.argv.as_slice()).unwrap_or_default();
    match command {
        Some(cmd) if !cmd.is_empty() => Ok(Command {
            argv: cmd.clone(),
            origin: "command",
        }),
        Some(_) => Err(field_err("command", "the command is empty")),
        None if !plugin_argv.is_empty() => Ok(Command {
            argv: with_args(plugin_argv.to_vec(), bp),
            origin: "agent.type",
        }),
        None => Ok(Command {
            argv: with_args(vec![agent_command(bp, agent)?], bp),
            origin: "agent.command",
        }),
    }
}

/// The command plus the blueprint's `agent.args`.
fn with_args(mut argv: Vec<String>, bp: &Blueprint) -> Vec<String> {
    argv.extend(bp.agent.args.iter().cloned());
    argv
}

/// The blueprint's own `agent.command`, which a plugin without a command needs.
fn agent_command(bp: &Blueprint, agent: Option<&AgentLaunch>) -> Result<String, SpecError> {
    match &bp.agent.command {
        Some(c) if !c.trim().is_empty() => Ok(c.clone()),
        _ => {
            let kind = agent.map(|a| a.kind.as_str()).unwrap_or("command");
            Err(field_err(
                "agent.command",
                format!(
                    "agent type `{kind}` needs a command (the program to run inside the sandbox)"
                ),
            ))
        }
    }
}

/// No argument may hold a NUL byte (checked after the environment, as the field is shared).
pub fn check_argv(argv: &[String]) -> Result<(), SpecError> {
    if argv.iter().any(|a| a.contains('\0')) {
        return Err(SpecError::check("agent.command", CheckError::Nul));
    }
    Ok(())
}
