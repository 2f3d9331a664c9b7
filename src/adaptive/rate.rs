//! The adaptive rate of one resource (`rate_limit = { ..., adaptive = { min, initial } }`):
//! a request rate learned from the downstream's overload refusals, under the configured
//! `requests` per `per` as its ceiling (issue 26).
//!
//! # Implementation details
//!
//! The rate is a pure function of its state, the signals the core feeds it, and `now`
//! (TCP's congestion control on a rate, with a pause on an explicit signal):
//!
//! * **Cut.** An overload refusal multiplies the rate by [`BACKOFF`], once per generation
//!   of grants: a refusal of a call granted before the last cut says what the old, higher
//!   rate did and is ignored, as in the adaptive concurrency limit (see the module
//!   above). The rate never goes below `min`.
//! * **Pause.** A refusal that carried a Retry-After stops every call of the resource
//!   until that instant (not only the refused job's retry): the downstream said when it
//!   takes calls again, and a call before then is a call it refuses.
//! * **Increase.** A call that succeeds while the rate is the bottleneck (the pacer made a
//!   grant wait within the last `per`) raises the rate; one that ended while the pacer
//!   was idle says nothing about whether a higher rate would pass. How much depends on
//!   where the rate stands against `peak`, the rate at the last cut (after CUBIC, which
//!   grows slowly near the window of its last loss and faster away from it):
//!   * below `peak`, each success adds `peak / 1000`: about a hundred calls from a cut
//!     back to `peak`, however high the rate, so the one or two refusals that end each
//!     cycle are about 1 % of the calls, and the rate spends its time within 10 % under
//!     `peak` (TCP's congestion avoidance, counted per call rather than per round trip);
//!   * above `peak` (the downstream may have raised its limit), the increment doubles for
//!     each `per` spent there, up to half a request per success (half the rate per
//!     `per`), so a raised limit is found in a few `per`s;
//!   * before the first cut there is no `peak`: half a request per success, doubling the
//!     rate in about two `per`s (TCP's slow start).
//! * **Pacing.** Calls are spaced by `per / (rate x safety_factor)` with a burst of
//!   `burst`, by GCRA (a theoretical arrival time, `tat`). Written by hand rather than
//!   through governor as the fixed rate is: governor's quota is fixed when its limiter is
//!   built, and rebuilding it at every change of the rate would forget `tat` and let a
//!   burst through at each change.
//!
//! The state is a real number of requests per `per`, within `[min, ceiling]`.

// Public for property tests only, through `weir::testing` (feature `testing`).
#![cfg_attr(not(feature = "testing"), allow(unreachable_pub, dead_code))]

use std::time::Duration;

use super::BACKOFF;
use crate::config::resilience::RateLimitConfig;

/// What a success adds below the last cut's rate, as a share of that rate.
const RECOVERY_STEP: f64 = 0.001;
/// The most a success adds (requests per `per`): half the rate per `per` at full use.
const MAX_STEP: f64 = 0.5;

/// A learned request rate for one resource (see the module docs).
#[derive(Debug, Clone)]
pub struct AdaptiveRate {
    min: f64,
    ceiling: f64,
    /// The learned rate, requests per `per`, within `[min, ceiling]`.
    estimate: f64,
    per: Duration,
    safety_factor: f64,
    burst: u32,
    /// GCRA's theoretical arrival time: the next call is admitted at `tat - tolerance`.
    tat: Duration,
    /// Grants made when the rate was last cut; refusals of those calls are ignored.
    recover: u64,
    /// The rate just before the last cut; `None` before the first.
    peak: Option<f64>,
    /// Since when the rate has been above `peak` (the probe's increment doubles per `per`).
    above_peak_since: Option<Duration>,
    /// No call before this instant: the latest Retry-After a refusal carried.
    paused_until: Duration,
    /// The last instant the pacer made a grant wait (the rate was the bottleneck).
    last_limited: Option<Duration>,
    /// Cuts so far.
    cuts: u64,
}

impl AdaptiveRate {
    /// The rate of a validated `rate_limit` with an `adaptive` section, created at `now`
    /// (without the section it starts at the ceiling, with a floor of 1).
    pub fn new(cfg: &RateLimitConfig, now: Duration) -> Self {
        let ceiling = f64::from(cfg.requests.max(1));
        let (min, initial) = cfg
            .adaptive
            .map_or((1, cfg.requests), |a| (a.min, a.initial_rate()));
        let min = f64::from(min.max(1)).min(ceiling);
        Self {
            min,
            ceiling,
            estimate: f64::from(initial).clamp(min, ceiling),
            per: cfg.per,
            safety_factor: cfg.safety_factor,
            burst: cfg.burst.max(1),
            tat: now,
            recover: 0,
            peak: None,
            above_peak_since: None,
            paused_until: Duration::ZERO,
            last_limited: None,
            cuts: 0,
        }
    }

    /// The learned rate now: requests per `per`, before the safety factor.
    pub fn rate(&self) -> f64 {
        self.estimate
    }

    /// Requests per second weir paces at now (the rate times the safety factor).
    pub fn pace_per_second(&self) -> f64 {
        self.estimate * self.safety_factor / self.per.as_secs_f64()
    }

    /// Cuts so far.
    pub fn cuts(&self) -> u64 {
        self.cuts
    }

    /// No call of the resource before this instant (a Retry-After), if it is after `now`.
    pub fn paused_until(&self, now: Duration) -> Option<Duration> {
        (self.paused_until > now).then_some(self.paused_until)
    }

    /// Time between calls at the current rate, once the burst is spent.
    pub fn interval(&self) -> Duration {
        let per_call = self.per.as_secs_f64() / (self.estimate * self.safety_factor).max(f64::MIN_POSITIVE);
        Duration::try_from_secs_f64(per_call)
            .unwrap_or(self.per)
            .max(Duration::from_nanos(1))
    }

    /// Takes one call's permission at `now`, or says the earliest instant it could (the
    /// end of a pause, or the pacer's next slot). A refusal takes nothing.
    pub fn check(&mut self, now: Duration) -> Result<(), Duration> {
        if now < self.paused_until {
            return Err(self.paused_until);
        }
        let interval = self.interval();
        let tolerance = interval.saturating_mul(self.burst - 1);
        let allowed_at = self.tat.saturating_sub(tolerance);
        if now < allowed_at {
            self.last_limited = Some(now);
            return Err(allowed_at);
        }
        self.tat = self.tat.max(now) + interval;
        Ok(())
    }

    /// The downstream refused the call granted as the resource's grant number `grant`
    /// as overloaded, at `now`, when `grants` grants had been made; `retry_after` is how
    /// long it asked callers to wait. Returns true when the rate was cut.
    pub fn refused(&mut self, grant: u64, grants: u64, retry_after: Option<Duration>, now: Duration) -> bool {
        if let Some(wait) = retry_after {
            self.paused_until = self.paused_until.max(now.saturating_add(wait));
        }
        if grant <= self.recover {
            return false;
        }
        self.recover = grants;
        self.peak = Some(self.estimate);
        self.above_peak_since = None;
        self.cuts += 1;
        self.estimate = (self.estimate * BACKOFF).clamp(self.min, self.ceiling);
        true
    }

    /// A call ended successfully at `now`: the rate grows if it was in use.
    pub fn succeeded(&mut self, now: Duration) {
        let in_use = self
            .last_limited
            .is_some_and(|at| now.saturating_sub(at) <= self.per);
        if !in_use {
            return;
        }
        let step = match self.peak {
            None => MAX_STEP,
            Some(peak) if self.estimate < peak => peak * RECOVERY_STEP,
            Some(peak) => {
                let since = *self.above_peak_since.get_or_insert(now);
                let pers = now.saturating_sub(since).as_secs_f64() / self.per.as_secs_f64();
                (peak * RECOVERY_STEP * 2f64.powi(pers.floor().min(30.0) as i32)).min(MAX_STEP)
            }
        };
        let next = self.estimate + step;
        if next.is_finite() {
            self.estimate = next.clamp(self.min, self.ceiling);
        }
    }

    /// Takes a new ceiling and pacing settings while it runs, keeping what it learned
    /// (clamped under the new ceiling) and its pause.
    pub fn reconfigure(&mut self, cfg: &RateLimitConfig) {
        let fresh = Self::new(cfg, self.tat);
        self.min = fresh.min;
        self.ceiling = fresh.ceiling;
        self.estimate = self.estimate.clamp(self.min, self.ceiling);
        self.per = fresh.per;
        self.safety_factor = fresh.safety_factor;
        self.burst = fresh.burst;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::resilience::AdaptiveRateConfig;

    const MS: Duration = Duration::from_millis(1);

    fn rate(min: u32, initial: u32, ceiling: u32) -> AdaptiveRate {
        AdaptiveRate::new(
            &RateLimitConfig {
                requests: ceiling,
                adaptive: Some(AdaptiveRateConfig {
                    min,
                    initial: Some(initial),
                }),
                ..RateLimitConfig::default()
            },
            Duration::ZERO,
        )
    }

    #[test]
    fn one_cut_per_generation_and_a_pause_for_everyone() {
        let mut r = rate(1, 100, 1000);
        let t = Duration::from_secs(1);
        assert!(r.refused(60, 100, Some(MS * 200), t));
        assert_eq!(r.rate(), 90.0);
        // Granted before the cut: says what the old rate did.
        assert!(!r.refused(100, 100, None, t));
        assert_eq!(r.rate(), 90.0);
        // Granted after it: cut again.
        assert!(r.refused(101, 101, None, t + MS));
        assert_eq!(r.rate(), 81.0);
        // Every call waits out the pause, whoever asks.
        assert_eq!(r.check(t + MS * 100), Err(t + MS * 200));
        assert_eq!(r.check(t + MS * 200), Ok(()));
    }

    #[test]
    fn paces_at_the_rate_times_the_safety_factor() {
        let mut r = AdaptiveRate::new(
            &RateLimitConfig {
                requests: 100,
                safety_factor: 0.5,
                adaptive: Some(AdaptiveRateConfig {
                    min: 1,
                    initial: Some(20),
                }),
                ..RateLimitConfig::default()
            },
            Duration::ZERO,
        );
        // 20 x 0.5 = 10 per second: one call every 100 ms.
        assert_eq!(r.check(Duration::ZERO), Ok(()));
        assert_eq!(r.check(MS * 50), Err(MS * 100));
        assert_eq!(r.check(MS * 100), Ok(()));
    }

    #[test]
    fn grows_only_while_it_is_the_bottleneck() {
        let mut r = rate(1, 10, 100);
        r.succeeded(Duration::from_secs(1));
        assert_eq!(r.rate(), 10.0, "the pacer never made a call wait");
        assert_eq!(r.check(Duration::from_secs(1)), Ok(()));
        assert!(r.check(Duration::from_secs(1)).is_err());
        for _ in 0..10 {
            r.succeeded(Duration::from_secs(1));
        }
        assert!(r.rate() > 10.5, "{}", r.rate());
    }
}
