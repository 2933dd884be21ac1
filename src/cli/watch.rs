//! `nemoclaw watch`: keeps the host converged. Reconciles at start, on every change to the
//! blueprint directory (debounced, so an editor's save burst is one reconcile), on a git poll
//! interval for git sources, and on a periodic resync that repairs drift (a sandbox that died is
//! restarted per its blueprint). An invalid blueprint stops that reconcile with the error
//! logged: nothing is torn down and the last good version keeps running. SIGTERM or SIGINT end
//! the loop cleanly; the sandboxes keep running.
//!
//! Every event is one JSON line on stdout (for journald or a log file).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use serde_json::json;

use super::source_args::SourceArgs;
use super::{Context, Exit};
use crate::blueprint::set::LoadOptions;
use crate::home::Home;
use crate::reconcile::watch::{Event, WatchConfig, Watcher};

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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One event as its JSON line (without the timestamp).
fn render(e: &Event<'_>) -> (&'static str, serde_json::Value) {
    match e {
        Event::WatchStart { source } => (
            "watch-start",
            json!({"source": format!("{source:?}"), "pid": std::process::id()}),
        ),
        Event::ReconcileStart {
            trigger,
            since_change,
        } => (
            "reconcile-start",
            json!({"trigger": trigger.as_str(), "sinceChangeMs": since_change.map(ms)}),
        ),
        Event::Invalid {
            errors,
            diagnostics,
        } => (
            "reconcile-invalid",
            json!({"errors": errors, "diagnostics": diagnostics, "note": "nothing changed: the running sandboxes keep their last good blueprint"}),
        ),
        Event::Error { error } => ("reconcile-error", json!({ "error": error })),
        Event::Change(o) => (
            "change",
            json!({"sandbox": o.name, "action": o.kind, "ok": o.result.is_ok(), "error": o.result.as_ref().err().map(ToString::to_string), "ms": u64::try_from(o.elapsed.as_millis()).unwrap_or(u64::MAX)}),
        ),
        Event::ReconcileDone {
            commit,
            changes,
            failed,
            elapsed,
        } => (
            "reconcile-done",
            json!({"commit": commit, "changes": changes, "failed": failed, "ms": ms(*elapsed)}),
        ),
        Event::WatchStop => ("watch-stop", json!({"note": "sandboxes keep running"})),
    }
}

fn print_event(e: Event<'_>) {
    let (what, detail) = render(&e);
    let mut line = json!({"ts": ts(), "event": what});
    if let (Some(l), Some(d)) = (line.as_object_mut(), detail.as_object()) {
        l.extend(d.clone());
    }
    println!("{line}");
}

pub fn run(a: WatchArgs, ctx: &Context) -> anyhow::Result<Exit> {
    install_signal_handlers()?;
    let home = ctx.home()?;
    home.ensure()?;
    let home = Home::at(std::fs::canonicalize(home.root())?);
    let config = WatchConfig {
        source: a.source.spec(&home),
        load: LoadOptions {
            default_agent_type: ctx.flavor.default_agent_type(),
            plugin_dirs: vec![home.plugins()],
        },
        prune: a.prune,
        interval: a.interval,
        resync: a.resync,
        wait: a.wait,
        parallel: a.parallel,
    };
    Watcher::new(home, config)?.run(&STOP, &print_event);
    Ok(Exit::Ok)
}
