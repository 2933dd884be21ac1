//! The command-line interface: one module per command.
//!
//! Conventions across every command: exit 0 on success, 1 on error, 2 only for
//! `plan --detailed-exitcode` ("changes present"), 64 for usage errors (including commands that
//! are not implemented yet). Errors go to stderr on one line; data goes to stdout, as JSON with
//! `--json` where a command prints data.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::home::Home;

pub mod apply;
pub mod checkpoint;
pub mod completions;
pub mod demo_agent;
pub mod exec;
pub mod gateway;
pub mod init;
pub mod lifecycle;
pub mod logs;
pub mod migrate;
pub mod npm_fetch;
pub mod pending;
pub mod plan;
pub mod plugins;
pub mod presets;
pub mod progress;
pub mod run;
pub mod schema;
pub mod setup_agent;
pub mod source_args;
pub mod status;
pub mod validate;
pub mod watch;

/// Exit codes shared by every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Failure = 1,
    /// Only `plan --detailed-exitcode`: changes are present.
    Changes = 2,
    Usage = 64,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// An error in how the command was called (exit 64), as opposed to a failure doing it (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// How the binary was invoked: `nemohermes` makes `hermes` the default agent type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Nemoclaw,
    Nemohermes,
}

impl Flavor {
    pub fn from_argv0(argv0: &str) -> Flavor {
        let base = std::path::Path::new(argv0)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        if base.starts_with("nemohermes") || base == "hermes" {
            Flavor::Nemohermes
        } else {
            Flavor::Nemoclaw
        }
    }

    /// The agent type a blueprint gets when it names none and has no `agent.command`:
    /// `hermes` for `nemohermes`, else `$NEMOCLAW_AGENT`, else `openclaw`.
    pub fn default_agent_type(self) -> String {
        match self {
            Flavor::Nemoclaw => crate::blueprint::defaults::agent_type(),
            Flavor::Nemohermes => "hermes".to_string(),
        }
    }
}

/// nemoclaw runs persistent AI agents in hardened Linux sandboxes, driven by declarative
/// blueprints.
#[derive(Debug, Parser)]
#[command(
    name = "nemoclaw",
    version,
    propagate_version = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// More output (repeat for more).
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// The nemoclaw home directory.
    #[arg(long, global = true, env = "NEMOCLAW_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the nemoclaw home with an example blueprint.
    Init(init::InitArgs),
    /// Check blueprints for errors without touching the host (for CI).
    Validate(validate::ValidateArgs),
    /// Print the blueprint JSON Schema.
    Schema(schema::SchemaArgs),
    /// Show what apply would change.
    Plan(plan::PlanArgs),
    /// Make the running sandboxes match the blueprints.
    Apply(apply::ApplyArgs),
    /// Reconcile on every change to the blueprints (for systemd, cron, GitOps).
    Watch(watch::WatchArgs),
    /// Start a sandbox.
    Start(lifecycle::StartArgs),
    /// Stop a sandbox (state is kept).
    Stop(lifecycle::StopArgs),
    /// Restart a sandbox.
    Restart(lifecycle::RestartArgs),
    /// Stop a sandbox and remove it from the inventory.
    Destroy(lifecycle::DestroyArgs),
    /// Migrate a stopped sandbox's state to a newer blueprint version (or --dry-run it).
    Migrate(migrate::MigrateArgs),
    /// Restore a snapshot of a sandbox's state and run the version that went with it.
    Rollback(migrate::RollbackArgs),
    /// List a sandbox's state snapshots.
    Snapshots(migrate::SnapshotsArgs),
    /// Show sandboxes and their health.
    Status(status::StatusArgs),
    /// Show a sandbox's logs.
    Logs(logs::LogsArgs),
    /// Run a command inside a running sandbox.
    Exec(exec::ExecArgs),
    /// Take a checkpoint of a running sandbox's state now.
    Checkpoint(checkpoint::CheckpointArgs),
    /// Run a command in a blueprint's sandbox in the foreground.
    Run(run::RunArgs),
    /// Export blueprints to other formats (Kubernetes).
    Export(pending::PendingArgs),
    /// Run the inference gateway alone.
    Gateway(gateway::GatewayArgs),
    /// List and show egress presets.
    Presets(presets::PresetsArgs),
    /// List and show agent plugins (the agent types).
    Plugins(plugins::PluginsArgs),
    /// Print shell completions.
    Completions(completions::CompletionsArgs),
    /// The quickstart's demo agent (runs inside a sandbox).
    #[command(hide = true)]
    DemoAgent(demo_agent::DemoAgentArgs),
    /// An agent plugin's setup in its own sandbox (started by apply, start and run).
    #[command(name = "__setup", hide = true)]
    Setup(setup_agent::SetupArgs),
    /// Fetch one npm package into a directory (runs inside a plugin's setup sandbox).
    #[command(name = "__npm-fetch", hide = true)]
    NpmFetch(npm_fetch::NpmFetchArgs),
}

/// What every command gets besides its own arguments.
pub struct Context {
    pub flavor: Flavor,
    pub verbose: u8,
    pub quiet: bool,
    home_override: Option<PathBuf>,
}

impl Context {
    /// The same context with progress output silenced (for machine-readable callers).
    pub fn silenced(&self) -> Context {
        Context {
            flavor: self.flavor,
            verbose: 0,
            quiet: true,
            home_override: self.home_override.clone(),
        }
    }

    /// The nemoclaw home (not created).
    pub fn home(&self) -> anyhow::Result<Home> {
        Ok(match &self.home_override {
            Some(p) => Home::at(p.clone()),
            None => Home::default_location()?,
        })
    }
}

/// Output format for data-printing commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
    Github,
}

/// Shared `--json` flag.
#[derive(Debug, Clone, Args)]
pub struct JsonFlag {
    /// Print machine-readable JSON.
    #[arg(long)]
    pub json: bool,
}

/// Parses arguments and runs the command; returns the process exit code.
pub fn main_with_args(args: Vec<std::ffi::OsString>) -> ExitCode {
    let argv0 = args
        .first()
        .and_then(|a| a.to_str())
        .unwrap_or("nemoclaw")
        .to_string();
    if crate::supervisor::is_supervise_invocation(&args) {
        return crate::supervisor::main(&args[2..]);
    }
    let flavor = Flavor::from_argv0(&argv0);
    if flavor == Flavor::Nemohermes {
        // Still one thread here; every later reader (blueprint loading, supervisors this
        // process starts) then agrees on the default agent type.
        std::env::set_var(crate::blueprint::defaults::AGENT_ENV, "hermes");
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    Exit::Ok.into()
                }
                _ => Exit::Usage.into(),
            };
        }
    };
    let ctx = Context {
        flavor,
        verbose: cli.verbose,
        quiet: cli.quiet,
        home_override: cli.home.clone(),
    };
    match run(cli.command, &ctx) {
        Ok(code) => code.into(),
        Err(e) => {
            let usage = e.downcast_ref::<UsageError>().is_some();
            eprintln!("error: {}", one_line(&format!("{e:#}")));
            if usage {
                Exit::Usage.into()
            } else {
                Exit::Failure.into()
            }
        }
    }
}

fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn run(cmd: Command, ctx: &Context) -> anyhow::Result<Exit> {
    match cmd {
        Command::Init(a) => init::run(a, ctx),
        Command::Validate(a) => validate::run(a, ctx),
        Command::Schema(a) => schema::run(a, ctx),
        Command::Completions(a) => completions::run(a),
        Command::DemoAgent(a) => demo_agent::run(a),
        Command::Setup(a) => setup_agent::run(a, ctx),
        Command::NpmFetch(a) => npm_fetch::run(a, ctx),
        Command::Plan(a) => plan::run(a, ctx),
        Command::Apply(a) => apply::run(a, ctx),
        Command::Watch(a) => watch::run(a, ctx),
        Command::Start(a) => lifecycle::start(a, ctx),
        Command::Stop(a) => lifecycle::stop(a, ctx),
        Command::Restart(a) => lifecycle::restart(a, ctx),
        Command::Destroy(a) => lifecycle::destroy(a, ctx),
        Command::Migrate(a) => migrate::migrate(a, ctx),
        Command::Rollback(a) => migrate::rollback(a, ctx),
        Command::Snapshots(a) => migrate::snapshots(a, ctx),
        Command::Status(a) => status::run(a, ctx),
        Command::Logs(a) => logs::run(a, ctx),
        Command::Exec(a) => exec::run(a, ctx),
        Command::Checkpoint(a) => checkpoint::run(a, ctx),
        Command::Run(a) => run::run(a, ctx),
        Command::Export(_) => pending::not_yet("export", "Kubernetes export"),
        Command::Gateway(a) => gateway::run(a, ctx),
        Command::Presets(a) => presets::run(a, ctx),
        Command::Plugins(a) => plugins::run(a, ctx),
    }
}
