//! Rate limits and budgets: requests per minute (governor), tokens per minute (a token bucket
//! charged after each response from the backend's usage figures) and tokens per day (a budget
//! per UTC day, persisted atomically so it survives a restart).
//!
//! The bucket and budget arithmetic is pure (time is passed in) and unit-tested; [`Limiter`]
//! wraps it with clocks and locks.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

// The limiter's counters are taken poisoned or not (crate::sync::lock). A panic while one was
// held cannot leave it inconsistent: every update under the lock is a plain assignment of
// numbers (a bucket level, a day and a count) with nothing that can panic between related
// writes, so the last value written is a valid state, at worst missing the charge of the
// request that panicked.
use crate::sync::lock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use governor::{clock::Clock, DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, InferenceError};

/// A token bucket that may go into debt: a request is admitted while the level is positive and
/// charged afterwards with what it really used.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    capacity: f64,
    per_sec: f64,
    level: f64,
    /// Seconds on the caller's clock at the last update.
    at: f64,
}

impl TokenBucket {
    pub fn per_minute(capacity: u64, now: f64) -> TokenBucket {
        let capacity = capacity as f64;
        TokenBucket {
            capacity,
            per_sec: capacity / 60.0,
            level: capacity,
            at: now,
        }
    }
    fn refill(&mut self, now: f64) {
        if now > self.at {
            self.level = (self.level + (now - self.at) * self.per_sec).min(self.capacity);
            self.at = now;
        }
    }
    /// `Ok` when a request may go now, else the seconds until it may.
    pub fn admit(&mut self, now: f64) -> Result<(), u64> {
        self.refill(now);
        if self.level > 0.0 {
            return Ok(());
        }
        #[allow(
            clippy::cast_possible_truncation,
            reason = "a whole number of seconds >= 1 (the level is <= 0, per_sec >= 0); `as` \
                      saturates a wait past u64::MAX, or the +inf of a bucket that never \
                      refills (capacity 0), to u64::MAX, which is the answer wanted"
        )]
        let wait = ((-self.level + 1.0) / self.per_sec).ceil() as u64;
        Err(wait)
    }
    pub fn charge(&mut self, tokens: u64, now: f64) {
        self.refill(now);
        self.level -= tokens as f64;
    }
    pub fn level(&self) -> f64 {
        self.level
    }
}

/// Tokens used on one UTC day (days since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyUsage {
    pub day: u64,
    pub used: u64,
}

impl DailyUsage {
    /// `Ok` when the budget has room at `unix_secs`, else the seconds until the next UTC day.
    pub fn admit(&mut self, budget: u64, unix_secs: u64) -> Result<(), u64> {
        self.roll(unix_secs);
        if self.used < budget {
            Ok(())
        } else {
            Err(86_400 - unix_secs % 86_400)
        }
    }
    pub fn charge(&mut self, tokens: u64, unix_secs: u64) {
        self.roll(unix_secs);
        self.used = self.used.saturating_add(tokens);
    }
    fn roll(&mut self, unix_secs: u64) {
        let today = unix_secs / 86_400;
        if self.day != today {
            *self = DailyUsage {
                day: today,
                used: 0,
            };
        }
    }
}

/// The limits of one router, shared by every connection.
pub struct Limiter {
    rpm: Option<(u32, DefaultDirectRateLimiter)>,
    tpm: Option<Mutex<TokenBucket>>,
    tpd: Option<(u64, Mutex<DailyUsage>)>,
    budget_file: Option<PathBuf>,
    dirty: AtomicBool,
    epoch: Instant,
}

/// The `requestsPerMinute`, `tokensPerMinute` and `tokensPerDay` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateSettings {
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub tpd: Option<u64>,
}

impl Limiter {
    /// `budget_file` holds the daily usage; it is read here and written by [`Limiter::persist`].
    pub fn new(s: RateSettings, budget_file: Option<&Path>) -> Result<Limiter, InferenceError> {
        let epoch = Instant::now();
        let rpm = s
            .rpm
            .and_then(NonZeroU32::new)
            .map(|n| (n.get(), RateLimiter::direct(Quota::per_minute(n))));
        let tpm = s
            .tpm
            .filter(|n| *n > 0)
            .map(|n| Mutex::new(TokenBucket::per_minute(n, 0.0)));
        let tpd = match s.tpd {
            Some(budget) => {
                let usage = match budget_file {
                    Some(p) => read_usage(p)?,
                    None => None,
                };
                Some((
                    budget,
                    Mutex::new(usage.unwrap_or(DailyUsage {
                        day: unix_now() / 86_400,
                        used: 0,
                    })),
                ))
            }
            None => None,
        };
        Ok(Limiter {
            rpm,
            tpm,
            tpd,
            budget_file: budget_file.map(Path::to_path_buf),
            dirty: AtomicBool::new(false),
            epoch,
        })
    }

    /// Carries usage over from the limiter this one replaces (on reload).
    pub fn inherit(&self, old: &Limiter) {
        if let (Some((_, new)), Some((_, old))) = (&self.tpd, &old.tpd) {
            *lock(new) = *lock(old);
        }
        if let (Some(new), Some(old)) = (&self.tpm, &old.tpm) {
            let o = lock(old).clone();
            let mut n = lock(new);
            n.level = o.level.min(n.capacity);
        }
    }

    pub fn token_limits(&self) -> bool {
        self.tpm.is_some() || self.tpd.is_some()
    }

    fn secs(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    /// Admits one request or answers 429 with the seconds to wait.
    pub fn admit(&self) -> Result<(), ApiError> {
        if let Some((n, rl)) = &self.rpm {
            if let Err(not_until) = rl.check() {
                let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
                return Err(ApiError::rate_limited(
                    "requests_per_minute_exceeded",
                    whole_secs_rounded_up(wait),
                    format!("this sandbox may send {n} requests per minute (inference.limits.requestsPerMinute); retry after {:.1}s", wait.as_secs_f64()),
                ));
            }
        }
        if let Some(b) = &self.tpm {
            if let Err(wait) = lock(b).admit(self.secs()) {
                return Err(ApiError::rate_limited(
                    "tokens_per_minute_exceeded",
                    wait,
                    format!("this sandbox used its tokens for this minute (inference.limits.tokensPerMinute); retry after {wait}s"),
                ));
            }
        }
        if let Some((budget, u)) = &self.tpd {
            if let Err(wait) = lock(u).admit(*budget, unix_now()) {
                return Err(ApiError::rate_limited(
                    "tokens_per_day_exceeded",
                    wait,
                    format!("this sandbox used its daily budget of {budget} tokens (inference.limits.tokensPerDay); it renews at 00:00 UTC, in {wait}s"),
                ));
            }
        }
        Ok(())
    }

    /// Charges what a response used.
    pub fn charge(&self, tokens: u64) {
        if tokens == 0 {
            return;
        }
        if let Some(b) = &self.tpm {
            lock(b).charge(tokens, self.secs());
        }
        if let Some((_, u)) = &self.tpd {
            lock(u).charge(tokens, unix_now());
            self.dirty.store(true, Ordering::Release);
        }
    }

    /// Writes the daily usage if it changed since the last write.
    pub fn persist(&self) -> Result<(), InferenceError> {
        let (Some(path), Some((_, u))) = (&self.budget_file, &self.tpd) else {
            return Ok(());
        };
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let usage = *lock(u);
        let json = serde_json::to_vec(&usage).expect("usage serialises");
        if let Some(dir) = path.parent() {
            crate::home::create_dir_private(dir).map_err(InferenceError::Dir)?;
        }
        crate::home::write_atomic(path, &json, 0o600).map_err(|e| {
            self.dirty.store(true, Ordering::Release);
            InferenceError::BudgetSave(e)
        })
    }

    /// Tokens used today, when a daily budget is set.
    pub fn used_today(&self) -> Option<u64> {
        self.tpd.as_ref().map(|(_, u)| {
            let mut u = lock(u);
            u.roll(unix_now());
            u.used
        })
    }
}

fn read_usage(path: &Path) -> Result<Option<DailyUsage>, InferenceError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| InferenceError::BudgetFile {
                    path: path.to_path_buf(),
                    source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(InferenceError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// `d` in whole seconds, rounded up (a client told to wait 0.2 s waits 1 s).
fn whole_secs_rounded_up(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_round_up_to_whole_seconds() {
        assert_eq!(whole_secs_rounded_up(Duration::ZERO), 0);
        assert_eq!(whole_secs_rounded_up(Duration::from_nanos(1)), 1);
        assert_eq!(whole_secs_rounded_up(Duration::from_millis(200)), 1);
        assert_eq!(whole_secs_rounded_up(Duration::from_secs(2)), 2);
        assert_eq!(whole_secs_rounded_up(Duration::new(59, 999_999_999)), 60);
        assert_eq!(whole_secs_rounded_up(Duration::MAX), u64::MAX);
    }

    #[test]
    fn bucket_admits_while_positive_and_refills() {
        let mut b = TokenBucket::per_minute(600, 0.0); // 10 tokens/s
        assert!(b.admit(0.0).is_ok());
        b.charge(650, 0.0); // a response may overdraw
        assert_eq!(b.level(), -50.0);
        assert_eq!(b.admit(1.0), Err(5)); // level -40: (40+1)/10 -> 5 s
        assert!(b.admit(6.0).is_ok(), "retry-after is honest");
        b.charge(0, 1000.0);
        assert_eq!(b.level(), 600.0, "refill stops at capacity");
    }

    #[test]
    fn daily_budget_rolls_at_utc_midnight() {
        let day = 20_000 * 86_400;
        let mut u = DailyUsage {
            day: 20_000,
            used: 0,
        };
        assert!(u.admit(100, day + 10).is_ok());
        u.charge(100, day + 20);
        assert_eq!(u.admit(100, day + 86_000), Err(400));
        assert!(
            u.admit(100, day + 86_400).is_ok(),
            "a new day starts at zero"
        );
        assert_eq!(u.used, 0);
    }

    #[test]
    fn rpm_answers_429_with_retry_after() {
        let l = Limiter::new(
            RateSettings {
                rpm: Some(2),
                ..Default::default()
            },
            None,
        )
        .unwrap();
        assert!(l.admit().is_ok());
        assert!(l.admit().is_ok());
        let e = l.admit().unwrap_err();
        assert_eq!(e.status, 429);
        assert!(e.retry_after.unwrap() >= 1);
        assert!(e.message.contains("requestsPerMinute"));
    }

    #[test]
    fn daily_usage_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("budget.json");
        let s = RateSettings {
            tpd: Some(1000),
            ..Default::default()
        };
        let l = Limiter::new(s, Some(&f)).unwrap();
        l.charge(600);
        l.persist().unwrap();
        l.charge(500);
        l.persist().unwrap();
        let again = Limiter::new(s, Some(&f)).unwrap();
        assert_eq!(again.used_today(), Some(1100));
        let e = again.admit().unwrap_err();
        assert_eq!(e.code, "tokens_per_day_exceeded");
    }

    #[test]
    fn a_poisoned_counter_keeps_counting() {
        let l = Limiter::new(
            RateSettings {
                tpd: Some(1000),
                ..Default::default()
            },
            None,
        )
        .unwrap();
        l.charge(400);
        let Some((_, usage)) = &l.tpd else {
            panic!("a daily budget was set")
        };
        // A thread panics while it holds the daily counter: the lock is poisoned.
        std::thread::scope(|s| {
            let _ = s
                .spawn(|| {
                    let _held = usage.lock();
                    panic!("poisoning the daily counter");
                })
                .join();
        });
        assert!(usage.is_poisoned());
        l.charge(700);
        assert_eq!(l.used_today(), Some(1100));
        let e = l.admit().unwrap_err();
        assert_eq!(e.code, "tokens_per_day_exceeded");
    }

    #[test]
    fn a_broken_budget_file_keeps_its_parse_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("budget.json");
        std::fs::write(&f, "not json").unwrap();
        let s = RateSettings {
            tpd: Some(1000),
            ..Default::default()
        };
        let Err(e) = Limiter::new(s, Some(&f)) else {
            panic!("a broken budget file was accepted")
        };
        assert!(matches!(&e, InferenceError::BudgetFile { path, .. } if *path == f));
        let chain = crate::error_chain(&e);
        assert!(chain.contains("not a token budget file"), "{chain}");
        assert!(
            chain.contains("expected ident"),
            "the parse error is kept: {chain}"
        );
    }
}
