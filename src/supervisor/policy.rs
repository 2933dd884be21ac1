//! The restart policy, pure: given how the agent exited and the recent crash history, restart
//! (after an exponential backoff), stay down, or give up.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::blueprint::types::{defaults, Lifecycle, RestartPolicy};

/// The policy's parameters, from the blueprint's `lifecycle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub restart: RestartPolicy,
    pub max_restarts: u32,
    pub crash_window: Duration,
    pub stop_timeout: Duration,
}

impl Policy {
    pub fn from_lifecycle(l: &Lifecycle) -> Policy {
        Policy {
            restart: l.restart,
            max_restarts: l.max_restarts.unwrap_or(defaults::MAX_RESTARTS),
            crash_window: l
                .crash_window
                .map(|d| d.as_duration())
                .unwrap_or(defaults::CRASH_WINDOW),
            stop_timeout: l
                .stop_timeout
                .map(|d| d.as_duration())
                .unwrap_or(defaults::STOP_TIMEOUT),
        }
    }
}

/// First backoff delay; doubled per crash in the window, capped at [`MAX_BACKOFF`].
pub const BASE_BACKOFF: Duration = Duration::from_millis(200);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start again after this delay.
    Restart(Duration),
    /// The policy says not to restart (a clean exit under `on-failure`, or `never`).
    StayDown,
    /// Too many crashes within the window.
    GiveUp { crashes: u32, window: Duration },
}

/// Crash history (times of failed exits inside the window).
#[derive(Debug, Default, Clone)]
pub struct Tracker {
    crashes: VecDeque<Instant>,
}

impl Tracker {
    /// Records an exit (`code` 0 is clean; signals count as failures) and decides.
    pub fn on_exit(&mut self, policy: &Policy, code: i32, now: Instant) -> Decision {
        let failed = code != 0;
        if failed {
            self.crashes.push_back(now);
        }
        while self
            .crashes
            .front()
            .is_some_and(|t| now.duration_since(*t) > policy.crash_window)
        {
            self.crashes.pop_front();
        }
        let restart = match policy.restart {
            RestartPolicy::Never => false,
            RestartPolicy::OnFailure => failed,
            RestartPolicy::Always => true,
        };
        if !restart {
            return Decision::StayDown;
        }
        let n = self.recent();
        if n > policy.max_restarts {
            return Decision::GiveUp {
                crashes: n,
                window: policy.crash_window,
            };
        }
        let delay = BASE_BACKOFF.saturating_mul(1u32 << n.saturating_sub(1).min(16));
        Decision::Restart(if failed {
            delay.min(MAX_BACKOFF)
        } else {
            BASE_BACKOFF
        })
    }

    /// Crashes currently inside the window.
    pub fn recent(&self) -> u32 {
        u32::try_from(self.crashes.len()).unwrap_or(u32::MAX)
    }

    /// Whether the agent crashed within `window` before `now` (without forgetting anything:
    /// [`Tracker::recent`] only forgets old crashes at the next exit).
    pub fn crashed_within(&self, window: Duration, now: Instant) -> bool {
        self.crashes
            .back()
            .is_some_and(|t| now.saturating_duration_since(*t) <= window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(restart: RestartPolicy) -> Policy {
        Policy {
            restart,
            max_restarts: 3,
            crash_window: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn backoff_doubles_then_gives_up() {
        let p = policy(RestartPolicy::OnFailure);
        let mut t = Tracker::default();
        let now = Instant::now();
        assert_eq!(
            t.on_exit(&p, 1, now),
            Decision::Restart(Duration::from_millis(200))
        );
        assert_eq!(
            t.on_exit(&p, 1, now + Duration::from_secs(1)),
            Decision::Restart(Duration::from_millis(400))
        );
        assert_eq!(
            t.on_exit(&p, 137, now + Duration::from_secs(2)),
            Decision::Restart(Duration::from_millis(800))
        );
        assert_eq!(
            t.on_exit(&p, 1, now + Duration::from_secs(3)),
            Decision::GiveUp {
                crashes: 4,
                window: Duration::from_secs(60)
            }
        );
    }

    #[test]
    fn crashes_outside_the_window_are_forgotten() {
        let p = policy(RestartPolicy::OnFailure);
        let mut t = Tracker::default();
        let now = Instant::now();
        for i in 0..3 {
            t.on_exit(&p, 1, now + Duration::from_secs(i));
        }
        let later = now + Duration::from_secs(200);
        assert_eq!(
            t.on_exit(&p, 1, later),
            Decision::Restart(Duration::from_millis(200))
        );
        assert_eq!(t.recent(), 1);
    }

    #[test]
    fn a_crash_counts_until_its_window_has_passed() {
        let p = policy(RestartPolicy::OnFailure);
        let mut t = Tracker::default();
        let now = Instant::now();
        assert!(!t.crashed_within(p.crash_window, now));
        t.on_exit(&p, 0, now);
        assert!(!t.crashed_within(p.crash_window, now), "a clean exit");
        t.on_exit(&p, 1, now);
        assert!(t.crashed_within(p.crash_window, now + Duration::from_secs(60)));
        assert!(!t.crashed_within(p.crash_window, now + Duration::from_secs(61)));
    }

    #[test]
    fn policies() {
        let now = Instant::now();
        assert_eq!(
            Tracker::default().on_exit(&policy(RestartPolicy::OnFailure), 0, now),
            Decision::StayDown
        );
        assert_eq!(
            Tracker::default().on_exit(&policy(RestartPolicy::Never), 1, now),
            Decision::StayDown
        );
        assert_eq!(
            Tracker::default().on_exit(&policy(RestartPolicy::Always), 0, now),
            Decision::Restart(BASE_BACKOFF)
        );
    }

    #[test]
    fn backoff_is_capped() {
        let p = Policy {
            max_restarts: 100,
            ..policy(RestartPolicy::Always)
        };
        let mut t = Tracker::default();
        let now = Instant::now();
        let mut last = Decision::StayDown;
        for i in 0..20 {
            last = t.on_exit(&p, 1, now + Duration::from_millis(i));
        }
        assert_eq!(last, Decision::Restart(MAX_BACKOFF));
    }
}
