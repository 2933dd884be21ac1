//! The reconcile loop that keeps a host converged (`nemoclaw watch`): it reconciles at start,
//! on every change to a blueprint directory (debounced, so an editor's save burst is one
//! reconcile), on a poll interval for git sources, and on a periodic resync that repairs drift
//! (a sandbox that died is restarted per its blueprint). An invalid blueprint stops that
//! reconcile with the error reported: nothing is torn down and the last good version keeps
//! running. The loop ends when its stop flag is set; the sandboxes keep running.
//!
//! Everything that happens is reported as an [`Event`] to the caller, which prints it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::apply::{execute, Outcome, Progress};
use super::lifecycle;
use super::plan::PlanOptions;
use super::prepare::{prepare, PrepareError, Prepared};
use super::runtime::{preflight, SupervisorRuntime};
use crate::blueprint::set::LoadOptions;
use crate::home::Home;
use crate::source::watch::{DirWatcher, WatchError, DEBOUNCE};
use crate::source::SourceSpec;

/// How long one reconcile waits for the apply lock.
const LOCK_WAIT: Duration = Duration::from_secs(60);
/// How often the loop looks at its stop flag while idle.
const SLICE: Duration = Duration::from_millis(100);

/// What the loop watches and how it applies.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    pub source: SourceSpec,
    pub load: LoadOptions,
    /// Destroy deployed sandboxes whose blueprint is gone from the source.
    pub prune: bool,
    /// How often a git source is polled for new commits.
    pub interval: Duration,
    /// How often to reconcile anyway, repairing drift.
    pub resync: Duration,
    /// How long each sandbox may take to come up.
    pub wait: Duration,
    /// How many independent sandboxes change at once.
    pub parallel: usize,
}

/// Why a reconcile started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Start,
    FileChange,
    GitPoll,
    Resync,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::FileChange => "file-change",
            Trigger::GitPoll => "git-poll",
            Trigger::Resync => "resync",
        }
    }
}

/// What the loop reports.
#[derive(Debug)]
pub enum Event<'a> {
    WatchStart {
        source: &'a SourceSpec,
    },
    ReconcileStart {
        trigger: Trigger,
        /// For a file change: how long ago the first change of the burst was seen.
        since_change: Option<Duration>,
    },
    /// The blueprints do not validate: nothing changed.
    Invalid {
        errors: usize,
        diagnostics: Vec<String>,
    },
    /// The reconcile could not plan or apply (lock, source, host checks).
    Error {
        error: String,
    },
    Change(&'a Outcome),
    ReconcileDone {
        commit: Option<&'a str>,
        changes: usize,
        failed: usize,
        elapsed: Duration,
    },
    WatchStop,
}

/// The loop over one source.
pub struct Watcher {
    home: Home,
    config: WatchConfig,
    dir: Option<DirWatcher>,
}

impl Watcher {
    /// Starts watching the source's directory (git sources are polled instead).
    pub fn new(home: Home, config: WatchConfig) -> Result<Watcher, WatchError> {
        let dir = match &config.source {
            SourceSpec::Dir(d) => Some(DirWatcher::new(d)?),
            SourceSpec::Git { .. } => None,
        };
        Ok(Watcher { home, config, dir })
    }

    /// Reconciles at once, then on every trigger until `stop` is set.
    pub fn run(&self, stop: &AtomicBool, on: &(dyn Fn(Event<'_>) + Sync)) {
        on(Event::WatchStart {
            source: &self.config.source,
        });
        self.reconcile(Trigger::Start, None, on);
        let mut next_resync = Instant::now() + self.config.resync;
        let mut next_poll = Instant::now() + self.config.interval;
        while !stop.load(Ordering::SeqCst) {
            let due = self.next_trigger(&mut next_poll, next_resync);
            if let Some((trigger, first)) = due {
                self.reconcile(trigger, first, on);
                next_resync = Instant::now() + self.config.resync;
            }
        }
        on(Event::WatchStop);
    }

    /// Waits one slice for a trigger: a debounced file change, a due git poll, or a resync.
    fn next_trigger(
        &self,
        next_poll: &mut Instant,
        next_resync: Instant,
    ) -> Option<(Trigger, Option<Instant>)> {
        match &self.dir {
            Some(dw) => {
                if let Some(first) = dw.wait(SLICE, DEBOUNCE) {
                    return Some((Trigger::FileChange, Some(first)));
                }
            }
            None => {
                std::thread::sleep(SLICE);
                if Instant::now() >= *next_poll {
                    *next_poll = Instant::now() + self.config.interval;
                    return Some((Trigger::GitPoll, None));
                }
            }
        }
        (Instant::now() >= next_resync).then_some((Trigger::Resync, None))
    }

    /// One reconcile: plan and apply under the apply lock.
    pub fn reconcile(
        &self,
        trigger: Trigger,
        first_change: Option<Instant>,
        on: &(dyn Fn(Event<'_>) + Sync),
    ) {
        let started = Instant::now();
        on(Event::ReconcileStart {
            trigger,
            since_change: first_change.map(|t| t.elapsed()),
        });
        let _lock = match lifecycle::lock(&self.home, LOCK_WAIT, "nemoclaw watch") {
            Ok(l) => l,
            Err(e) => {
                return on(Event::Error {
                    error: crate::error_chain(&e),
                })
            }
        };
        let runtime = SupervisorRuntime {
            home: self.home.clone(),
            wait: self.config.wait,
        };
        for (name, r) in super::upgrade::recover_all(&self.home, &runtime) {
            if let Err(e) = r {
                return on(Event::Error {
                    error: format!(
                        "finishing the interrupted upgrade of `{name}`: {}",
                        crate::error_chain(&e)
                    ),
                });
            }
        }
        let Some(prepared) = self.prepare(on) else {
            return;
        };
        if let Err(e) = preflight(&self.home, &prepared.plan) {
            return on(Event::Error {
                error: crate::error_chain(&e),
            });
        }
        let origins = prepared.origins();
        if let Err(e) =
            super::agents::install_all(&self.home, &prepared.plan, &origins, &mut |_, _| {})
        {
            return on(Event::Error {
                error: crate::error_chain(&e),
            });
        }
        let outcomes = execute(
            &self.home,
            &prepared.plan,
            &prepared.origins(),
            &runtime,
            self.config.parallel,
            &|p| {
                if let Progress::Finished(o) = p {
                    on(Event::Change(o));
                }
            },
        );
        on(Event::ReconcileDone {
            commit: prepared.loaded.source.commit.as_deref(),
            changes: outcomes.len(),
            failed: outcomes.iter().filter(|o| o.result.is_err()).count(),
            elapsed: started.elapsed(),
        });
    }

    /// Loads and plans; an invalid source or a failure is reported and gives `None`.
    fn prepare(&self, on: &(dyn Fn(Event<'_>) + Sync)) -> Option<Prepared> {
        let opts = PlanOptions {
            prune: self.config.prune,
            ..Default::default()
        };
        match prepare(&self.home, &self.config.source, &self.config.load, opts) {
            Ok(p) => Some(p),
            Err((PrepareError::Invalid { errors }, Some(l))) => {
                let diagnostics = l.set.diagnostics.iter().map(|d| d.headline()).collect();
                on(Event::Invalid {
                    errors,
                    diagnostics,
                });
                None
            }
            Err((e, _)) => {
                on(Event::Error {
                    error: crate::error_chain(&e),
                });
                None
            }
        }
    }
}
