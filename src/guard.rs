//! One resource's resilience policies together: the rate limit, the circuit breaker,
//! retries, jitter, stagger and fallback, as the scheduler consults them when it grants,
//! completes and retries. Only resources that configure at least one policy get a guard,
//! so plain resources pay nothing.

use std::time::Duration;

use crate::adaptive::rate::AdaptiveRate;
use crate::breaker::{Breaker, BreakerState, Permit, Transition};
use crate::config::resilience::{JitterConfig, RateLimitConfig, RetryConfig, StaggerConfig};
use crate::config::ResourceConfig;
use crate::jitter::Jitter;
use crate::job::{OutcomeKind, ResourceId};
use crate::limit::rate::RateLimit;

/// Resilience counters of one resource, in [`crate::ResourceSnapshot::resilience`]
/// (serialized with these field names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ResilienceStats {
    /// The breaker's state, if the resource has one.
    pub breaker: Option<BreakerState>,
    /// Breaker transitions so far.
    pub transitions: u64,
    /// Times the breaker opened (from closed or half-open).
    pub opened: u64,
    /// Outcomes in the breaker's window now.
    pub window_calls: u64,
    /// Failures among them.
    pub window_failures: u64,
    /// Grants that the rate limit postponed (each one scheduled a wake-up).
    pub limiter_waits: u64,
    /// Attempts granted (first attempts and retries).
    pub attempts: u64,
    /// Failed attempts that were scheduled to run again.
    pub retries: u64,
    /// Jobs moved from this resource to its fallback while its breaker was open.
    pub fallbacks: u64,
    /// Of those, jobs it took back from the fallback's queue once its breaker had
    /// closed and it had a free slot (the rest ran on the fallback).
    pub returned: u64,
    /// The learned rate in whole requests per `rate_limit.per` (before the safety
    /// factor), if the resource's rate limit is adaptive (`rate_limit.adaptive`).
    pub learned_requests: Option<u64>,
    /// Overload refusals reported for the resource's calls.
    pub overloads: u64,
    /// Times the learned rate was cut.
    pub rate_cuts: u64,
    /// Grants postponed because a Retry-After paused the resource.
    pub paused_waits: u64,
}

impl ResilienceStats {
    /// Failure share of the breaker's window (0 when it is empty).
    pub fn error_rate(&self) -> f64 {
        if self.window_calls == 0 {
            0.0
        } else {
            self.window_failures as f64 / self.window_calls as f64
        }
    }
}

/// What the guard says about granting a slot now.
#[derive(Debug)]
pub(crate) enum Gate {
    /// Grant, holding this breaker permit (if there is a breaker).
    Pass(Option<Permit>),
    /// The breaker is open until then: route to the fallback, or wait.
    Open(Duration),
    /// Not now: ask again at this instant (`None`: when an outcome arrives).
    Wait(Option<Duration>),
    /// Still waiting for the limiter instant it named before (ask again then; the
    /// wake-up asked for then may have been merged into an earlier one).
    Limited(Duration),
}

/// The rate limit of a resource: fixed (governor's GCRA) or learned.
#[derive(Debug)]
enum Limiter {
    Fixed(RateLimit),
    Adaptive(Box<AdaptiveRate>),
}

impl Limiter {
    fn new(cfg: &RateLimitConfig, now: Duration) -> Self {
        match cfg.adaptive {
            Some(_) => Limiter::Adaptive(Box::new(AdaptiveRate::new(cfg, now))),
            None => Limiter::Fixed(RateLimit::new(cfg)),
        }
    }

    fn check(&mut self, now: Duration) -> Result<(), Duration> {
        match self {
            Limiter::Fixed(l) => l.check(now),
            Limiter::Adaptive(l) => l.check(now),
        }
    }
}

/// The policies of one resource.
#[derive(Debug)]
pub(crate) struct Guard {
    name: ResourceId,
    limiter: Option<Limiter>,
    /// The limiter's settings, to tell a changed rate from an unchanged one.
    rate: Option<RateLimitConfig>,
    breaker: Option<Breaker>,
    retry: Option<RetryConfig>,
    jitter: JitterConfig,
    rng: Jitter,
    stagger: Option<StaggerConfig>,
    /// Index of the fallback resource, resolved once every resource exists.
    pub(crate) fallback: Option<u32>,
    /// The rate limit refused until then; not asked again before.
    limited_until: Option<Duration>,
    pub(crate) stats: ResilienceStats,
}

const NO_JITTER: JitterConfig = JitterConfig {
    min: 1.0,
    max: 1.0,
    seed: None,
};

impl Guard {
    /// A guard for a resource that configures any policy, else `None`.
    pub(crate) fn new(name: &ResourceId, cfg: Option<&ResourceConfig>, now: Duration) -> Option<Box<Guard>> {
        let cfg = cfg?;
        let any = cfg.rate_limit.is_some()
            || cfg.breaker.is_some()
            || cfg.retry.is_some()
            || cfg.fallback.is_some()
            || cfg.stagger.is_some();
        if !any {
            return None;
        }
        let jitter = cfg.jitter.unwrap_or(NO_JITTER);
        let rng = match jitter.seed {
            Some(seed) => Jitter::seeded(seed),
            None => Jitter::for_name(name.as_str(), 0),
        };
        let breaker = cfg.breaker.map(Breaker::new);
        Some(Box::new(Guard {
            name: name.clone(),
            limiter: cfg.rate_limit.as_ref().map(|r| Limiter::new(r, now)),
            rate: cfg.rate_limit.clone(),
            stats: ResilienceStats {
                breaker: breaker.as_ref().map(Breaker::state),
                ..ResilienceStats::default()
            },
            breaker,
            retry: cfg.retry,
            jitter,
            rng,
            stagger: cfg.stagger,
            fallback: None,
            limited_until: None,
        }))
    }

    /// Takes resource `name`'s new settings (`None`: no section any more) while it runs.
    /// A resource that had no guard gets one when it now configures a policy; one that
    /// had a guard keeps it (and its counters) even when every policy is removed.
    /// What each policy keeps is in [`Guard::apply`].
    pub(crate) fn reconfigure(
        slot: &mut Option<Box<Guard>>,
        name: &ResourceId,
        cfg: Option<&ResourceConfig>,
        now: Duration,
    ) {
        match slot {
            None => *slot = Guard::new(name, cfg, now),
            Some(guard) => guard.apply(&cfg.cloned().unwrap_or_default(), now),
        }
    }

    /// New settings for a live guard. Unchanged policies keep their state. A changed
    /// rate limit starts from an empty bucket at `now` (its next call waits one interval
    /// of the new rate), so a change never lets a burst through that neither rate would.
    /// A changed breaker keeps its state and, unless its `window` changed, its window
    /// (see `Breaker::reconfigure`). Retries, jitter and stagger apply to the next
    /// decision; the jitter's random sequence restarts only when its seed changed.
    fn apply(&mut self, cfg: &ResourceConfig, now: Duration) {
        if cfg.rate_limit != self.rate {
            self.limiter = match (self.limiter.take(), cfg.rate_limit.as_ref()) {
                // A learned rate keeps what it learned (and its pause) under new bounds.
                (Some(Limiter::Adaptive(mut l)), Some(r)) if r.adaptive.is_some() => {
                    l.reconfigure(r);
                    Some(Limiter::Adaptive(l))
                }
                (_, Some(r)) => {
                    let mut limiter = Limiter::new(r, now);
                    while limiter.check(now).is_ok() {}
                    Some(limiter)
                }
                (_, None) => None,
            };
            self.rate = cfg.rate_limit.clone();
            self.limited_until = None;
        }
        match (&mut self.breaker, cfg.breaker) {
            (Some(b), Some(c)) => {
                if b.reconfigure(c) {
                    tracing::info!(resource = %self.name, "breaker window changed: its outcomes were cleared");
                }
            }
            (None, Some(c)) => self.breaker = Some(Breaker::new(c)),
            (_, None) => self.breaker = None,
        }
        self.stats.breaker = self.breaker.as_ref().map(Breaker::state);
        let jitter = cfg.jitter.unwrap_or(NO_JITTER);
        if jitter.seed != self.jitter.seed {
            self.rng = match jitter.seed {
                Some(seed) => Jitter::seeded(seed),
                None => Jitter::for_name(self.name.as_str(), 0),
            };
        }
        self.jitter = jitter;
        self.retry = cfg.retry;
        self.stagger = cfg.stagger;
    }

    /// The delay before a new job's first attempt.
    pub(crate) fn stagger(&mut self) -> Duration {
        match self.stagger {
            Some(s) => self.rng.between(s.min, s.max),
            None => Duration::ZERO,
        }
    }

    fn log(&mut self, t: Option<Transition>) {
        let Some(t) = t else { return };
        self.stats.transitions += 1;
        self.stats.breaker = Some(t.to);
        if t.to == BreakerState::Open {
            self.stats.opened += 1;
            tracing::warn!(resource = %self.name, from = %t.from, to = %t.to, calls = t.calls, failures = t.failures, "breaker transition");
        } else {
            tracing::info!(resource = %self.name, from = %t.from, to = %t.to, calls = t.calls, failures = t.failures, "breaker transition");
        }
    }

    /// Brings the breaker's timed transitions up to `now`; true if it is closed (or the
    /// resource has no breaker).
    pub(crate) fn is_closed(&mut self, now: Duration) -> bool {
        let Some(b) = &mut self.breaker else { return true };
        let t = b.tick(now);
        let closed = b.state() == BreakerState::Closed;
        self.log(t);
        closed
    }

    /// Brings the breaker's timed transitions up to `now`; true if it is open.
    pub(crate) fn is_open(&mut self, now: Duration) -> bool {
        let Some(b) = &mut self.breaker else { return false };
        let t = b.tick(now);
        let open = b.state() == BreakerState::Open;
        self.log(t);
        open
    }

    /// May a job with a free slot be granted at `now`? A pass takes a rate-limit token
    /// and a breaker permit, so ask only when a live job and a free slot are at hand.
    pub(crate) fn gate(&mut self, now: Duration, has_slot: bool) -> Gate {
        if let Some(b) = &mut self.breaker {
            let t = b.tick(now);
            let check = b.check();
            let open = b.state() == BreakerState::Open;
            self.log(t);
            match check {
                Err(Some(until)) if open => return Gate::Open(until),
                Err(at) => return Gate::Wait(at),
                Ok(()) => {}
            }
        }
        if !has_slot {
            return Gate::Wait(None);
        }
        if let Some(until) = self.limited_until {
            if now < until {
                return Gate::Limited(until);
            }
            self.limited_until = None;
        }
        if let Some(l) = &mut self.limiter {
            if let Err(at) = l.check(now) {
                // Jitter spreads the wake-ups; never earlier than the limiter's instant.
                let wait = at.saturating_sub(now);
                let wake = (now + self.rng.scale(wait, self.jitter.min, self.jitter.max)).max(at);
                self.stats.limiter_waits += 1;
                if self.paused_until(now).is_some() {
                    self.stats.paused_waits += 1;
                }
                self.limited_until = Some(wake);
                return Gate::Wait(Some(wake));
            }
        }
        let permit = self
            .breaker
            .as_mut()
            .map(|b| b.admit(now).expect("checked above, and nothing changed since"));
        self.stats.attempts += 1;
        Gate::Pass(permit)
    }

    /// The end of the pause a Retry-After set on the learned rate, if it is after `now`.
    pub(crate) fn paused_until(&self, now: Duration) -> Option<Duration> {
        match &self.limiter {
            Some(Limiter::Adaptive(l)) => l.paused_until(now),
            _ => None,
        }
    }

    /// The downstream refused the call granted as the resource's grant number `grant`
    /// as overloaded (`grants` grants made so far), asking callers to wait `retry_after`.
    /// The learned rate, if any, is cut and paused; the attempt's breaker permit is
    /// handed back uncounted unless the breaker counts overloads (`count_overload`), so
    /// `complete` or `retry` that follow find no permit. Returns the permit to keep.
    pub(crate) fn overloaded(
        &mut self,
        permit: Option<Permit>,
        grant: u64,
        grants: u64,
        retry_after: Option<Duration>,
        now: Duration,
    ) -> Option<Permit> {
        self.stats.overloads += 1;
        if let Some(Limiter::Adaptive(l)) = &mut self.limiter {
            if l.refused(grant, grants, retry_after, now) {
                self.stats.rate_cuts += 1;
                tracing::debug!(resource = %self.name, rate = l.rate(), ?retry_after, "learned rate cut");
            }
            // A pause moves the instant the resource may grant: ask again then.
            self.limited_until = None;
        }
        match &self.breaker {
            Some(b) if b.counts_overload() => permit,
            _ => {
                self.forget(permit);
                None
            }
        }
    }

    /// Records a granted attempt's outcome in the breaker (and a success in the learned
    /// rate).
    pub(crate) fn on_outcome(&mut self, permit: Option<Permit>, outcome: OutcomeKind, now: Duration) {
        if let (Some(Limiter::Adaptive(l)), OutcomeKind::Completed) = (&mut self.limiter, outcome) {
            l.succeeded(now);
        }
        let (Some(b), Some(permit)) = (&mut self.breaker, permit) else {
            return;
        };
        let t = match outcome {
            OutcomeKind::Completed => b.record(permit, true, now),
            OutcomeKind::Failed | OutcomeKind::TimedOut => b.record(permit, false, now),
            OutcomeKind::Skipped | OutcomeKind::Cancelled => {
                b.forget(permit);
                None
            }
        };
        self.log(t);
    }

    /// A granted attempt gave its slot up without an outcome (a parked parent).
    pub(crate) fn forget(&mut self, permit: Option<Permit>) {
        if let (Some(b), Some(p)) = (&mut self.breaker, permit) {
            b.forget(p);
        }
    }

    /// The backoff before another attempt, after `attempts`, if the retry policy allows one.
    pub(crate) fn retry_delay(&mut self, attempts: u32, retry_after: Option<Duration>) -> Option<Duration> {
        let cfg = self.retry?;
        if attempts >= cfg.max_attempts {
            return None;
        }
        Some(crate::retry::backoff(
            &cfg,
            attempts,
            retry_after,
            &self.jitter,
            &mut self.rng,
        ))
    }

    /// The breaker's state now, if there is a breaker.
    pub(crate) fn breaker_state(&self) -> Option<BreakerState> {
        self.breaker.as_ref().map(Breaker::state)
    }

    /// The counters at `now`.
    pub(crate) fn snapshot(&self, now: Duration) -> ResilienceStats {
        let (window_calls, window_failures) = self.breaker.as_ref().map_or((0, 0), |b| b.window(now));
        let learned_requests = match &self.limiter {
            Some(Limiter::Adaptive(l)) => Some(l.rate().floor() as u64),
            _ => None,
        };
        ResilienceStats {
            window_calls,
            window_failures,
            learned_requests,
            ..self.stats
        }
    }
}
