//! `nemoclaw gateway serve --blueprint FILE --listen ADDR`: the inference router alone (for
//! benchmarks, a Kubernetes sidecar, or users who only want the router). SIGHUP re-reads the
//! blueprint and the keys; SIGINT/SIGTERM stop it after saving the daily token budget.
//!
//! `nemoclaw gateway mock-backend --listen ADDR` (hidden) serves the built-in mock alone over
//! HTTP: the benchmark's fast backend.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};

use super::{Context, Exit, UsageError};
use crate::blueprint::{set::load_one, Inference};
use crate::gateway::credentials;
use crate::gateway::egress::accept;
use crate::gateway::inference::{mock, Router, RouterConfig};

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

fn runtime(threads: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        b.worker_threads(n.max(1));
    }
    b.enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn load(path: &Path) -> anyhow::Result<(String, Inference, PathBuf)> {
    let entry = load_one(path).map_err(|diags| {
        let text: Vec<String> = diags
            .iter()
            .map(|d| match &d.hint {
                Some(h) => format!("{} ({h})", d.headline()),
                None => d.headline(),
            })
            .collect();
        anyhow::anyhow!("{}", text.join("; "))
    })?;
    let name = entry.blueprint.metadata.name.clone();
    let Some(inf) = entry.blueprint.inference else {
        return Err(UsageError(format!(
            "{}: the blueprint has no `inference` section to serve",
            path.display()
        ))
        .into());
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    Ok((name, inf, dir))
}

fn serve(a: ServeArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let home = ctx.home()?;
    let (name, inference, base_dir) = load(&a.blueprint)?;
    let creds = credentials::resolve(&inference, &home.credentials())?;
    let mut cfg = RouterConfig::new(name.clone(), inference, base_dir);
    cfg.log_dir = if a.no_log {
        None
    } else {
        Some(a.log_dir.clone().unwrap_or_else(|| home.logs(&name)))
    };
    cfg.budget_file = Some(home.inference_budget(&name));
    cfg.ca_file = a.ca_file.clone();
    let router = Router::build(cfg, &creds)?;
    let rt = runtime(a.threads)?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(a.listen).await.with_context(|| format!("cannot listen on {}", a.listen))?;
        let addr = listener.local_addr()?;
        println!("{}", serde_json::json!({"listening": addr.to_string(), "sandbox": name, "log": router.log_path()}));
        if !ctx.quiet {
            eprintln!("nemoclaw gateway: serving {name}'s inference on http://{addr}/v1 (SIGHUP reloads, Ctrl-C stops)");
        }
        let reloader = router.clone();
        let blueprint = a.blueprint.clone();
        let creds_dir = home.credentials();
        tokio::spawn(async move {
            let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
            while hup.recv().await.is_some() {
                let result = load(&blueprint).and_then(|(_, inf, dir)| {
                    let c = credentials::resolve(&inf, &creds_dir)?;
                    reloader.reload(&inf, &dir, &c).map_err(anyhow::Error::from)
                });
                match result {
                    Ok(()) => eprintln!("nemoclaw gateway: reloaded {}", blueprint.display()),
                    Err(e) => eprintln!("nemoclaw gateway: reload failed, the previous policy stays: {e:#}"),
                }
            }
        });
        let stop = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
            }
        };
        router.serve_until(listener, stop).await.context("the inference listener failed")?;
        anyhow::Ok(())
    })?;
    Ok(Exit::Ok)
}

fn mock_backend(a: MockArgs) -> anyhow::Result<Exit> {
    let rt = runtime(Some(a.threads))?;
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
