//! `nemoclaw watch`: keeps the host converged. Reconciles at start, on every change to the
//! blueprint directory (debounced, so an editor's save burst is one reconcile), on a git poll
//! interval for git sources, and on a periodic resync that repairs drift (a sandbox that died is
//! restarted per its blueprint). An invalid blueprint stops that reconcile with the error
//! logged: nothing is torn down and the last good version keeps running. SIGTERM or SIGINT end
//! the loop cleanly; the sandboxes keep running.
//!
//! Every event is one JSON line on stdout (for journald or a log file).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use serde_json::json;

use super::apply::{lock, SupervisorRuntime};
use super::source_args::SourceArgs;
use super::{Context, Exit};
use crate::blueprint::set::LoadOptions;
use crate::home::Home;
use crate::reconcile::apply::{execute, Progress};
use crate::reconcile::plan::PlanOptions;
use crate::reconcile::prepare::{prepare, PrepareError};
use crate::source::watch::{DirWatcher, DEBOUNCE};
use crate::source::SourceSpec;

#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// How often to poll a git source for new commits.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// How often to reconcile anyway, repairing drift.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub resync: Duration,
    /// Destroy deployed sandboxes whose blueprint is gone from the source.
    #[arg(long)]
    pub prune: bool,
    /// How long each sandbox may take to come up.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
    /// How many independent sandboxes to change at once.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() -> anyhow::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(sig, &action) }?;
    }
    Ok(())
}

fn ts() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn event(what: &str, detail: serde_json::Value) {
    let mut line = json!({"ts": ts(), "event": what});
    if let (Some(l), Some(d)) = (line.as_object_mut(), detail.as_object()) {
        l.extend(d.clone());
    }
    println!("{line}");
}

struct Watcher<'a> {
    ctx: &'a Context,
    home: Home,
    spec: SourceSpec,
    args: WatchArgs,
}

impl Watcher<'_> {
    /// One reconcile: plan and apply under the apply lock.
    fn reconcile(&self, trigger: &str, since_change: Option<Instant>) {
        let started = Instant::now();
        event(
            "reconcile-start",
            json!({"trigger": trigger, "sinceChangeMs": since_change.map(|t| t.elapsed().as_secs_f64() * 1000.0)}),
        );
        let _lock = match lock(&self.home, Duration::from_secs(60), "nemoclaw watch") {
            Ok(l) => l,
            Err(e) => {
                event("reconcile-error", json!({"error": format!("{e:#}")}));
                return;
            }
        };
        let load_opts = LoadOptions {
            default_agent_type: self.ctx.flavor.default_agent_type().to_string(),
        };
        let opts = PlanOptions {
            prune: self.args.prune,
            ..Default::default()
        };
        let prepared = match prepare(&self.home, &self.spec, &load_opts, opts) {
            Ok(p) => p,
            Err((PrepareError::Invalid { errors }, Some(l))) => {
                let diags: Vec<String> = l.set.diagnostics.iter().map(|d| d.headline()).collect();
                event(
                    "reconcile-invalid",
                    json!({"errors": errors, "diagnostics": diags, "note": "nothing changed: the running sandboxes keep their last good blueprint"}),
                );
                return;
            }
            Err((e, _)) => {
                event("reconcile-error", json!({"error": e.to_string()}));
                return;
            }
        };
        if let Err(e) = super::apply::preflight(&self.home, &prepared.plan) {
            event("reconcile-error", json!({"error": format!("{e:#}")}));
            return;
        }
        let runtime = SupervisorRuntime {
            ctx: self.ctx,
            home: self.home.clone(),
            wait: self.args.wait,
        };
        let outcomes = execute(
            &self.home,
            &prepared.plan,
            &prepared.origins(),
            &runtime,
            self.args.parallel,
            &|p| {
                if let Progress::Finished(o) = p {
                    event(
                        "change",
                        json!({"sandbox": o.name, "action": o.kind, "ok": o.result.is_ok(), "error": o.result.as_ref().err(), "ms": o.elapsed.as_millis() as u64}),
                    )
                }
            },
        );
        event(
            "reconcile-done",
            json!({
                "commit": prepared.loaded.source.commit,
                "changes": outcomes.len(),
                "failed": outcomes.iter().filter(|o| o.result.is_err()).count(),
                "ms": started.elapsed().as_secs_f64() * 1000.0,
            }),
        );
    }
}

pub fn run(a: WatchArgs, ctx: &Context) -> anyhow::Result<Exit> {
    install_signal_handlers()?;
    let home = ctx.home()?;
    home.ensure()?;
    let home = Home::at(std::fs::canonicalize(home.root())?);
    let spec = a.source.spec(&home);
    let dir_watcher = match &spec {
        SourceSpec::Dir(d) => Some(DirWatcher::new(d)?),
        SourceSpec::Git { .. } => None,
    };
    let quiet = ctx.silenced();
    let w = Watcher {
        ctx: &quiet,
        home,
        spec,
        args: a.clone(),
    };
    event(
        "watch-start",
        json!({"source": format!("{:?}", w.spec), "pid": std::process::id()}),
    );
    w.reconcile("start", None);
    let mut next_resync = Instant::now() + a.resync;
    let mut next_poll = Instant::now() + a.interval;
    let slice = Duration::from_millis(100);
    while !STOP.load(Ordering::SeqCst) {
        if let Some(dw) = &dir_watcher {
            if let Some(first) = dw.wait(slice, DEBOUNCE) {
                w.reconcile("file-change", Some(first));
                next_resync = Instant::now() + a.resync;
                continue;
            }
        } else {
            std::thread::sleep(slice);
            if Instant::now() >= next_poll {
                w.reconcile("git-poll", None);
                next_poll = Instant::now() + a.interval;
                next_resync = Instant::now() + a.resync;
                continue;
            }
        }
        if Instant::now() >= next_resync {
            w.reconcile("resync", None);
            next_resync = Instant::now() + a.resync;
        }
    }
    event("watch-stop", json!({"note": "sandboxes keep running"}));
    Ok(Exit::Ok)
}
