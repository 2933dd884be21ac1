//! The inference router on its own (`nemoclaw gateway serve`: benchmarks, a Kubernetes
//! sidecar, users who only want the router): one blueprint's `inference` section served on a
//! TCP address. SIGHUP re-reads the blueprint and the keys (a refused reload keeps the previous
//! policy); SIGINT or SIGTERM stop it after the daily token budget is saved.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::signal::unix::{signal, SignalKind};

use super::{InferenceError, Router, RouterConfig};
use crate::blueprint::diag::Diagnostic;
use crate::blueprint::{set::load_one, Inference};
use crate::gateway::credentials::{self, CredentialError};
use crate::home::Home;

#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    #[error("{}", diagnostics.iter().map(|d| match &d.hint { Some(h) => format!("{} ({h})", d.headline()), None => d.headline() }).collect::<Vec<_>>().join("; "))]
    Blueprint { diagnostics: Vec<Diagnostic> },
    #[error("{}: the blueprint has no `inference` section to serve", .0.display())]
    NoInference(PathBuf),
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error(transparent)]
    Inference(#[from] InferenceError),
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the inference listener failed")]
    Serve(#[source] std::io::Error),
}

/// What to serve, and where.
#[derive(Debug, Clone)]
pub struct Standalone {
    pub blueprint: PathBuf,
    pub listen: SocketAddr,
    /// Where `inference.jsonl` goes.
    pub log: LogDir,
    /// Worker threads (`None`: one per core).
    pub threads: Option<usize>,
    /// Extra CA certificates for HTTPS backends.
    pub ca_file: Option<PathBuf>,
}

/// Where the standalone router writes `inference.jsonl`.
#[derive(Debug, Clone)]
pub enum LogDir {
    /// The home's `logs/<name>/`, like a sandbox's gateway.
    Home,
    At(PathBuf),
    /// No log.
    Off,
}

/// What the caller is told as the router runs.
pub enum Event<'a> {
    Listening {
        addr: SocketAddr,
        sandbox: &'a str,
        log: Option<PathBuf>,
    },
    Reloaded(&'a Path),
    ReloadFailed(StandaloneError),
}

/// The blueprint's name, inference section and directory (relative paths resolve against it).
fn load(path: &Path) -> Result<(String, Inference, PathBuf), StandaloneError> {
    let entry = load_one(path).map_err(|diagnostics| StandaloneError::Blueprint { diagnostics })?;
    let name = entry.blueprint.metadata.name.clone();
    let Some(inf) = entry.blueprint.inference else {
        return Err(StandaloneError::NoInference(path.to_path_buf()));
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    Ok((name, inf, dir))
}

/// Serves until SIGINT or SIGTERM; `on` hears of the listening address and of each reload.
pub fn serve(
    home: &Home,
    s: Standalone,
    on: impl Fn(Event<'_>) + Send + Sync + 'static,
) -> Result<(), StandaloneError> {
    let (name, inference, base_dir) = load(&s.blueprint)?;
    let creds = credentials::resolve(&inference, &home.credentials())?;
    let mut cfg = RouterConfig::new(name.clone(), inference, base_dir);
    cfg.log_dir = match &s.log {
        LogDir::Home => Some(home.logs(&name)),
        LogDir::At(dir) => Some(dir.clone()),
        LogDir::Off => None,
    };
    cfg.budget_file = Some(home.inference_budget(&name));
    cfg.ca_file = s.ca_file.clone();
    let router = Router::build(cfg, &creds)?;
    let rt = runtime(s.threads)?;
    let on = std::sync::Arc::new(on);
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(s.listen)
            .await
            .map_err(|source| StandaloneError::Listen {
                addr: s.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(StandaloneError::Serve)?;
        on(Event::Listening {
            addr,
            sandbox: &name,
            log: router.log_path(),
        });
        tokio::spawn(reload_on_hangup(
            router.clone(),
            s.blueprint,
            home.credentials(),
            on,
        ));
        router
            .serve_until(listener, stopped())
            .await
            .map_err(StandaloneError::Serve)
    })
}

/// A multi-threaded runtime with `threads` workers (`None`: one per core).
pub fn runtime(threads: Option<usize>) -> Result<tokio::runtime::Runtime, StandaloneError> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        b.worker_threads(n.max(1));
    }
    b.enable_all().build().map_err(StandaloneError::Runtime)
}

/// Each SIGHUP re-reads the blueprint and the keys; a refused reload changes nothing.
async fn reload_on_hangup(
    router: Router,
    blueprint: PathBuf,
    creds_dir: PathBuf,
    on: std::sync::Arc<impl Fn(Event<'_>) + Send + Sync + 'static>,
) {
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        let result = load(&blueprint).and_then(|(_, inf, dir)| {
            let c = credentials::resolve(&inf, &creds_dir)?;
            Ok(router.reload(&inf, &dir, &c)?)
        });
        match result {
            Ok(()) => on(Event::Reloaded(&blueprint)),
            Err(e) => on(Event::ReloadFailed(e)),
        }
    }
}

/// Resolves at the first SIGINT or SIGTERM.
async fn stopped() {
    let mut term = signal(SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
