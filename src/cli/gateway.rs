//! `nemoclaw gateway serve --blueprint FILE --listen ADDR`: runs
//! [`crate::gateway::inference::standalone`], the inference router alone, and prints where it
//! listens and each reload.
//!
//! `nemoclaw gateway mock-backend --listen ADDR` (hidden) serves the built-in mock alone over
//! HTTP: the benchmark's fast backend.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};

use super::{Context, Exit, UsageError};
use crate::gateway::egress::accept;
use crate::gateway::inference::mock;
use crate::gateway::inference::standalone::{self, Event, LogDir, Standalone, StandaloneError};

#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    #[command(subcommand)]
    pub command: GatewayCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum GatewayCommand {
    /// Serve a blueprint's inference router on ADDR.
    Serve(ServeArgs),
    /// Serve the built-in mock backend alone (benchmarks).
    #[command(hide = true)]
    MockBackend(MockArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The blueprint whose `inference` section to serve.
    #[arg(long, value_name = "FILE")]
    pub blueprint: PathBuf,
    /// Address to listen on (port 0 picks one; the chosen address is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Directory for inference.jsonl. Default: $NEMOCLAW_HOME/logs/<name>.
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// Do not write inference.jsonl.
    #[arg(long, conflicts_with = "log_dir")]
    pub no_log: bool,
    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Also trust these CA certificates (PEM) for HTTPS backends.
    #[arg(long, value_name = "FILE", env = crate::tls::CA_FILE_ENV)]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct MockArgs {
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threads: usize,
}

pub fn run(a: GatewayArgs, ctx: &Context) -> anyhow::Result<Exit> {
    match a.command {
        GatewayCommand::Serve(s) => serve(s, ctx),
        GatewayCommand::MockBackend(m) => mock_backend(m),
    }
}

fn serve(a: ServeArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let home = ctx.home()?;
    let log = match (a.no_log, a.log_dir) {
        (true, _) => LogDir::Off,
        (false, Some(d)) => LogDir::At(d),
        (false, None) => LogDir::Home,
    };
    let quiet = ctx.quiet;
    let s = Standalone {
        blueprint: a.blueprint,
        listen: a.listen,
        log,
        threads: a.threads,
        ca_file: a.ca_file,
    };
    standalone::serve(&home, s, move |e| match e {
        Event::Listening { addr, sandbox, log } => {
            println!("{}", serde_json::json!({"listening": addr.to_string(), "sandbox": sandbox, "log": log}));
            if !quiet {
                eprintln!("nemoclaw gateway: serving {sandbox}'s inference on http://{addr}/v1 (SIGHUP reloads, Ctrl-C stops)");
            }
        }
        Event::Reloaded(path) => eprintln!("nemoclaw gateway: reloaded {}", path.display()),
        Event::ReloadFailed(e) => eprintln!(
            "nemoclaw gateway: reload failed, the previous policy stays: {}",
            crate::error_chain(&e)
        ),
    })
    .map_err(usage)?;
    Ok(Exit::Ok)
}

/// A blueprint without an inference section is a usage error (exit 64), like a bad flag.
fn usage(e: StandaloneError) -> anyhow::Error {
    match e {
        StandaloneError::NoInference(_) => UsageError(e.to_string()).into(),
        e => e.into(),
    }
}

fn mock_backend(a: MockArgs) -> anyhow::Result<Exit> {
    let rt = standalone::runtime(Some(a.threads))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .with_context(|| format!("cannot listen on {}", a.listen))?;
        println!(
            "{}",
            serde_json::json!({"listening": listener.local_addr()?.to_string()})
        );
        let backend = Arc::new(mock::MockBackend::default());
        let e = accept::serve_until_error(listener, move |stream| {
            mock::serve_connection(backend.clone(), stream)
        })
        .await;
        bail!("accept failed: {e}")
    })
}
