//! Routed inference: an OpenAI-compatible gateway that holds the keys.
//!
//! The agent calls `http://inference.local/v1` with a placeholder key. The router validates each
//! request against the blueprint ([`validate`]), applies rate limits and budgets ([`limits`]),
//! runs guards ([`guard`]), picks backends ([`route`]), injects the real key and forwards
//! ([`upstream`]) or answers from the built-in [`mock`], streams the answer back, and writes one
//! JSON line per request ([`log`]).
//!
//! For the supervisor:
//! ```ignore
//! let creds = credentials::resolve(&inference, &home.credentials())?;          // at apply/start
//! let router = Router::build(RouterConfig::new(name, inference, blueprint_dir), &creds)?;
//! tokio::spawn({ let r = router.clone(); async move { r.serve(listener).await } });
//! router.reload(&new_inference, &blueprint_dir, &new_creds)?;                  // hot
//! router.last_inference();                                                      // for status
//! ```

pub mod backend;
pub mod error;
pub mod guard;
pub mod limits;
pub mod log;
pub mod mock;
pub mod policy;
pub mod route;
pub mod scrub_stream;
pub mod server;
pub mod standalone;
pub mod upstream;
pub mod validate;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

pub use error::{ApiError, InferenceError};

use crate::blueprint::Inference;
use crate::gateway::credentials::Credentials;
use crate::gateway::egress::accept;
use limits::Limiter;
use policy::Policy;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type BoxBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// HTTP-level limits of the listener.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// A client must send its request headers within this time (slowloris).
    pub header_read_timeout: Duration,
    /// ... and its body within this time.
    pub body_read_timeout: Duration,
    /// Largest request head.
    pub max_header_bytes: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            max_header_bytes: 64 << 10,
        }
    }
}

/// Everything a router is built from, besides the keys.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// The sandbox name (log lines, request ids).
    pub name: String,
    pub inference: Inference,
    /// The blueprint's directory: guard scripts and mock replies files are relative to it.
    pub base_dir: PathBuf,
    /// Where `inference.jsonl` goes (`Home::logs(name)`); `None` logs nothing.
    pub log_dir: Option<PathBuf>,
    /// Where the daily token budget is kept across restarts. Keep it out of anything the agent
    /// can write (e.g. `run/<name>/inference-budget.json`, not the agent's state dir).
    pub budget_file: Option<PathBuf>,
    /// Extra CA certificates (PEM) trusted for HTTPS backends, besides the Mozilla roots.
    pub ca_file: Option<PathBuf>,
    pub options: ServeOptions,
}

impl RouterConfig {
    pub fn new(
        name: impl Into<String>,
        inference: Inference,
        base_dir: impl Into<PathBuf>,
    ) -> RouterConfig {
        RouterConfig {
            name: name.into(),
            inference,
            base_dir: base_dir.into(),
            log_dir: None,
            budget_file: None,
            ca_file: None,
            options: ServeOptions::default(),
        }
    }
}

/// The policy in force and the limits that go with it; swapped whole on reload.
pub struct State {
    pub(crate) policy: Policy,
    pub(crate) limiter: Arc<Limiter>,
}

/// What every connection shares.
pub struct Shared {
    state: RwLock<Arc<State>>,
    client: upstream::HttpClient,
    log: log::LogSink,
    options: ServeOptions,
    budget_file: Option<PathBuf>,
    last_inference_ms: AtomicU64,
    ids: AtomicU64,
    id_prefix: String,
}

impl Shared {
    fn state(&self) -> Arc<State> {
        // The lock guards one `Arc` swapped whole on reload: poisoned or not, it holds a
        // complete state.
        crate::sync::read(&self.state).clone()
    }
    fn next_id(&self) -> String {
        format!(
            "{}{:06}",
            self.id_prefix,
            self.ids.fetch_add(1, Ordering::Relaxed)
        )
    }
    fn charge(&self, tokens: u64) {
        if tokens > 0 {
            self.state().limiter.charge(tokens);
        }
    }
    fn touch(&self) {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let now = u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX);
        self.last_inference_ms.store(now, Ordering::Relaxed);
    }
}

/// The inference router of one sandbox. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Router {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("id_prefix", &self.shared.id_prefix)
            .finish_non_exhaustive()
    }
}

impl Router {
    /// Compiles the policy, opens the log and reads the daily budget. Fails (naming the
    /// blueprint field) before anything is served.
    pub fn build(cfg: RouterConfig, creds: &Credentials) -> Result<Router, InferenceError> {
        let policy = Policy::compile(&cfg.inference, creds, &cfg.base_dir)?;
        let limiter = Arc::new(Limiter::new(policy.rates, cfg.budget_file.as_deref())?);
        let log = match &cfg.log_dir {
            Some(d) => log::LogSink::open(d)?,
            None => log::LogSink::none(),
        };
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let id_prefix = format!(
            "{}-{:x}-",
            short(&cfg.name),
            started.as_secs() ^ u64::from(started.subsec_nanos())
        );
        Ok(Router {
            shared: Arc::new(Shared {
                state: RwLock::new(Arc::new(State { policy, limiter })),
                client: upstream::client(cfg.ca_file.as_deref())?,
                log,
                options: cfg.options,
                budget_file: cfg.budget_file,
                last_inference_ms: AtomicU64::new(0),
                ids: AtomicU64::new(0),
                id_prefix,
            }),
        })
    }

    /// Swaps in a new policy and keys without dropping connections; token usage carries over.
    /// On error the old policy stays in force.
    pub fn reload(
        &self,
        inference: &Inference,
        base_dir: &Path,
        creds: &Credentials,
    ) -> Result<(), InferenceError> {
        let policy = Policy::compile(inference, creds, base_dir)?;
        let old = self.shared.state();
        old.limiter.persist()?;
        let limiter = Arc::new(Limiter::new(
            policy.rates,
            self.shared.budget_file.as_deref(),
        )?);
        limiter.inherit(&old.limiter);
        // Poisoned or not, the slot holds a whole `Arc` (see `Shared::state`).
        *crate::sync::write(&self.shared.state) = Arc::new(State { policy, limiter });
        Ok(())
    }

    /// Serves on `listener` until the process ends (or the task is dropped).
    pub async fn serve(&self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        self.serve_until(listener, std::future::pending()).await
    }

    /// Serves on `listener` until `shutdown` completes; then saves the daily budget.
    pub async fn serve_until(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        spawn_flusher(Arc::downgrade(&self.shared));
        let shared = self.shared.clone();
        let accepting = accept::serve(listener, "inference listener", move |stream| {
            server::serve_connection(shared.clone(), stream)
        });
        tokio::select! {
            _ = shutdown => {}
            _ = accepting => {}
        }
        if let Err(e) = self.flush() {
            tracing::warn!("{}", crate::error_chain(&e));
        }
        Ok(())
    }

    /// Writes the daily token usage now (it is otherwise written every second while it changes).
    pub fn flush(&self) -> Result<(), InferenceError> {
        self.shared.state().limiter.persist()
    }

    /// When the last request reached a backend (for `status`).
    pub fn last_inference(&self) -> Option<SystemTime> {
        match self.shared.last_inference_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }

    /// Tokens used today when `limits.tokensPerDay` is set (for `status`).
    pub fn tokens_used_today(&self) -> Option<u64> {
        self.shared.state().limiter.used_today()
    }

    /// The request log file, when logging.
    pub fn log_path(&self) -> Option<PathBuf> {
        self.shared.log.path().map(Path::to_path_buf)
    }
}

fn spawn_flusher(shared: Weak<Shared>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let Some(s) = shared.upgrade() else { return };
            if let Err(e) = s.state().limiter.persist() {
                tracing::warn!("{}", crate::error_chain(&e));
            }
        }
    });
}

fn short(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(24)
        .collect()
}
