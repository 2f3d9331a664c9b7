//! A per-resource request rate limit: `requests` per `per`, scaled by a safety factor,
//! decided by governor's GCRA on a clock that only moves when the core is told `now`.
//!
//! # Why governor fits the pure-`now` design
//!
//! governor's limiter reads time through its `Clock` trait. Its `FakeRelativeClock` is a
//! counter of nanoseconds that moves only when advanced, so before each decision this
//! module advances it to the `now` it was given. The limiter therefore never reads a
//! real clock, and a refusal comes back as governor's `NotUntil`, whose
//! `earliest_possible()` is the instant (on the same time base as `now`) at which a call
//! would be admitted. The core returns that instant instead of sleeping.
//!
//! # What it guarantees
//!
//! With rate `r = floor(requests x safety_factor)` per `per` (emission interval
//! `T = per / r`) and burst `b`, GCRA admits at most `b + floor(W / T)` calls in any
//! window of length `W`. With the default burst of 1 that is at most `r` calls in any
//! half-open window of length `per`: the provider's own limit times the safety factor,
//! never more, however the calls are timed.

// Public for benches and property tests only, through `weir::testing` (feature `testing`).
#![cfg_attr(not(feature = "testing"), allow(unreachable_pub, dead_code))]

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, FakeRelativeClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::config::resilience::RateLimitConfig;

/// A rate limit for one resource (see the module docs).
#[derive(Debug)]
pub struct RateLimit {
    limiter: RateLimiter<NotKeyed, InMemoryState, FakeRelativeClock, NoOpMiddleware<Nanos>>,
    clock: FakeRelativeClock,
    interval: Duration,
}

impl RateLimit {
    /// A limiter for a validated configuration.
    pub fn new(cfg: &RateLimitConfig) -> Self {
        let interval = cfg.interval();
        let burst = NonZeroU32::new(cfg.burst.max(1)).expect("max(1) is non-zero");
        let quota = Quota::with_period(interval)
            .expect("a validated rate limit has a non-zero interval")
            .allow_burst(burst);
        let clock = FakeRelativeClock::default();
        Self {
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
            interval,
        }
    }

    /// Time between admitted calls once the burst is spent.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Takes one call's permission at `now`, or says the earliest instant it could.
    /// A refusal takes nothing.
    pub fn check(&mut self, now: Duration) -> Result<(), Duration> {
        let at = Duration::from(self.clock.now());
        if now > at {
            self.clock.advance(now - at);
        }
        self.limiter
            .check()
            .map_err(|not_until| Duration::from(not_until.earliest_possible()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(requests: u32, per: u64, safety_factor: f64) -> RateLimit {
        RateLimit::new(&RateLimitConfig {
            requests,
            per: Duration::from_secs(per),
            safety_factor,
            burst: 1,
            ..RateLimitConfig::default()
        })
    }

    #[test]
    fn safety_factor_scales_the_rate() {
        // 60 per minute x 0.5 = one call every 2 s.
        let mut l = limit(60, 60, 0.5);
        assert_eq!(l.interval(), Duration::from_secs(2));
        assert_eq!(l.check(Duration::ZERO), Ok(()));
        assert_eq!(l.check(Duration::from_secs(1)), Err(Duration::from_secs(2)));
        assert_eq!(l.check(Duration::from_secs(2)), Ok(()));
    }

    #[test]
    fn a_refusal_says_exactly_when_and_then_admits() {
        let mut l = limit(10, 1, 1.0);
        assert_eq!(l.check(Duration::ZERO), Ok(()));
        let at = l.check(Duration::from_millis(1)).unwrap_err();
        assert_eq!(at, Duration::from_millis(100));
        assert!(l.check(at - Duration::from_nanos(1)).is_err());
        assert_eq!(l.check(at), Ok(()));
    }
}
