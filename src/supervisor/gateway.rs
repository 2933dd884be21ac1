//! The per-sandbox gateway as the supervisor runs it: the network side ([`SandboxGateway`]:
//! sealed netns, nftables fence, egress proxy, DNS, ingress) plus the inference router served on
//! the `inference.local` socket planted in the same netns. Both live on the gateway's own tokio
//! runtime, in the supervisor's (host) namespaces; keys stay in this process's memory.
//!
//! Plugged into the sandbox runtime as its [`NetworkSetup`] hook, so every (re)start of the
//! agent gets a fresh sealed netns with the gateway planted in it, and a policy reload reaches
//! the running sandbox without restarting anything.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::blueprint::Blueprint;
use crate::gateway::credentials::{self, CredentialError};
use crate::gateway::egress::{AttachError, EgressError, SandboxGateway, SystemResolver};
use crate::gateway::inference::{InferenceError, Router, RouterConfig};
use crate::gateway::netns::NetError;
use crate::home::Home;
use crate::policy::{NetworkPolicy, PolicyError};
use crate::sandbox::spawn::HookError;
use crate::sandbox::{NetnsHandle, NetworkSetup};

/// Why the gateway of a sandbox cannot start, attach or reload; each keeps its source.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("network")]
    Policy(#[from] PolicyError),
    #[error("gateway")]
    Egress(#[from] EgressError),
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error("inference")]
    Inference(#[from] InferenceError),
    #[error(transparent)]
    Attach(#[from] AttachError),
    #[error("inference listener")]
    InferenceListener(#[source] std::io::Error),
    #[error("network")]
    Reload(#[from] NetError),
    #[error(
        "adding or removing the inference section needs a restart (apply replaces the sandbox)"
    )]
    InferenceAddedOrRemoved,
}

/// The gateway of one sandbox.
pub struct GatewayHook {
    name: String,
    home: Home,
    net: SandboxGateway,
    router: Option<Router>,
    /// The inference server of the current netns, stopped when the agent restarts.
    serving: Option<tokio::task::JoinHandle<()>>,
}

fn base_dir(bp_path: &Path) -> PathBuf {
    bp_path.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn router_config(home: &Home, name: &str, bp: &Blueprint, bp_path: &Path) -> Option<RouterConfig> {
    let inf = bp.inference.clone()?;
    let mut cfg = RouterConfig::new(name, inf, base_dir(bp_path));
    cfg.log_dir = Some(home.logs(name));
    // Out of the agent's reach: the agent cannot reset its own daily budget.
    cfg.budget_file = Some(home.inference_budget(name));
    cfg.ca_file = crate::tls::ca_file_from_env();
    Some(cfg)
}

/// The host checks a gateway start makes, without starting anything: the network policy
/// compiles (user presets from the home) and every key the inference section names can be read.
/// `apply` runs this for every sandbox it is about to start, before it changes anything.
pub fn preflight(home: &Home, bp: &Blueprint) -> Result<(), GatewayError> {
    NetworkPolicy::compile(&bp.network, Some(&home.presets()))?;
    if let Some(inf) = &bp.inference {
        credentials::resolve(inf, &home.credentials())?;
    }
    Ok(())
}

impl GatewayHook {
    /// Builds the gateway for the deployed blueprint at `bp_path`. Fails, naming what is
    /// missing, when a key cannot be read or the policy does not compile: before any sandbox
    /// exists. Call with the supervisor's signals already blocked, so the runtime's threads
    /// inherit the mask and never take SIGTERM meant for the supervisor's signalfd.
    pub fn new(
        home: &Home,
        name: &str,
        bp: &Blueprint,
        bp_path: &Path,
    ) -> Result<GatewayHook, GatewayError> {
        let policy = NetworkPolicy::compile(&bp.network, Some(&home.presets()))?;
        let net = SandboxGateway::new(
            name,
            policy,
            &home.logs(name),
            Arc::new(SystemResolver),
            bp.inference.is_some(),
        )?;
        let router = match router_config(home, name, bp, bp_path) {
            Some(cfg) => {
                let creds = credentials::resolve(&cfg.inference, &home.credentials())?;
                Some(Router::build(cfg, &creds)?)
            }
            None => None,
        };
        Ok(GatewayHook {
            name: name.to_string(),
            home: home.clone(),
            net,
            router,
            serving: None,
        })
    }

    fn serve_inference(&mut self) -> Result<(), GatewayError> {
        if let Some(h) = self.serving.take() {
            h.abort();
        }
        let (Some(router), Some(listener)) =
            (self.router.clone(), self.net.take_inference_listener())
        else {
            return Ok(());
        };
        listener
            .set_nonblocking(true)
            .map_err(GatewayError::InferenceListener)?;
        let rt = self.net.runtime();
        let _guard = rt.enter();
        let listener =
            tokio::net::TcpListener::from_std(listener).map_err(GatewayError::InferenceListener)?;
        self.serving = Some(rt.spawn(async move {
            let _ = router.serve(listener).await;
        }));
        Ok(())
    }
}

impl GatewayHook {
    fn reload_policy(&mut self, bp: &Blueprint, bp_path: &Path) -> Result<(), GatewayError> {
        let policy = NetworkPolicy::compile(&bp.network, Some(&self.home.presets()))?;
        match (
            &self.router,
            router_config(&self.home, &self.name, bp, bp_path),
        ) {
            (Some(router), Some(cfg)) => {
                // Keys are read again, so a rotated key needs no restart.
                let creds = credentials::resolve(&cfg.inference, &self.home.credentials())?;
                router.reload(&cfg.inference, &cfg.base_dir, &creds)?;
            }
            (None, None) => {}
            _ => return Err(GatewayError::InferenceAddedOrRemoved),
        }
        Ok(self.net.reload(policy)?)
    }
}

impl NetworkSetup for GatewayHook {
    fn setup(&mut self, ns: &NetnsHandle<'_>) -> Result<(), HookError> {
        self.net.attach(ns.netns).map_err(GatewayError::from)?;
        Ok(self.serve_inference()?)
    }

    fn agent_env(&self) -> Vec<(String, String)> {
        self.net.agent_env()
    }

    fn reload(&mut self, bp: &Blueprint, bp_path: &Path) -> Result<(), HookError> {
        Ok(self.reload_policy(bp, bp_path)?)
    }

    fn last_inference(&self) -> Option<std::time::SystemTime> {
        self.router.as_ref().and_then(Router::last_inference)
    }

    fn detach(&mut self) {
        if let Some(h) = self.serving.take() {
            h.abort();
        }
        self.net.detach();
    }
}

impl Drop for GatewayHook {
    fn drop(&mut self) {
        if let Some(r) = &self.router {
            let _ = r.flush();
        }
    }
}
