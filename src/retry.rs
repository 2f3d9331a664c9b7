//! When a failed attempt runs again: exponential backoff with full jitter and a cap,
//! never earlier than a downstream's Retry-After.
//!
//! The delay before attempt `n + 1` (after `n` attempts) is drawn uniformly from
//! `[0, min(cap, base x 2^(n-1))]` ("full jitter": retries of many jobs spread over the
//! whole interval instead of waking together). When the failed attempt carried a
//! Retry-After `ra`, the delay is at least `ra` scaled by the resource's jitter factor
//! clamped to at least 1 (so at least `ra`, as the server asked, and waiters spread over
//! `[ra, ra x max]`); the cap does not shorten a Retry-After.

use std::time::Duration;

use crate::config::resilience::{JitterConfig, RetryConfig};
use crate::jitter::Jitter;

/// The backoff before the next attempt, after `attempts` attempts (at least 1).
pub(crate) fn backoff(
    cfg: &RetryConfig,
    attempts: u32,
    retry_after: Option<Duration>,
    jitter: &JitterConfig,
    rng: &mut Jitter,
) -> Duration {
    let exp = attempts.saturating_sub(1);
    let ceiling = if exp >= 31 {
        cfg.cap
    } else {
        cfg.base.saturating_mul(1u32 << exp).min(cfg.cap)
    };
    let drawn = rng.between(Duration::ZERO, ceiling);
    match retry_after {
        Some(ra) => drawn.max(rng.scale(ra, jitter.min.max(1.0), jitter.max.max(1.0))),
        None => drawn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RetryConfig {
        RetryConfig {
            max_attempts: 10,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        }
    }

    #[test]
    fn delays_stay_within_the_exponential_ceiling_and_the_cap() {
        let mut rng = Jitter::seeded(1);
        let j = JitterConfig::default();
        for attempts in 1..=10u32 {
            let ceiling = Duration::from_secs(1u64 << (attempts - 1)).min(Duration::from_secs(60));
            let draws: Vec<_> = (0..500)
                .map(|_| backoff(&cfg(), attempts, None, &j, &mut rng))
                .collect();
            assert!(draws.iter().all(|d| *d <= ceiling), "attempt {attempts}");
            // Full jitter: the draws cover the interval, not just its top.
            assert!(draws.iter().any(|d| *d < ceiling / 4), "attempt {attempts}");
            assert!(draws.iter().any(|d| *d > ceiling * 3 / 4), "attempt {attempts}");
        }
    }

    #[test]
    fn honours_retry_after_even_beyond_the_cap() {
        let mut rng = Jitter::seeded(2);
        let j = JitterConfig {
            min: 0.9,
            max: 1.6,
            seed: None,
        };
        let ra = Duration::from_secs(90);
        for attempts in 1..5 {
            let d = backoff(&cfg(), attempts, Some(ra), &j, &mut rng);
            assert!(d >= ra && d <= ra.mul_f64(1.6), "{d:?}");
        }
        let small = Duration::from_millis(10);
        let d = backoff(&cfg(), 1, Some(small), &j, &mut rng);
        assert!(d >= small && d <= Duration::from_secs(1), "{d:?}");
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut rng = Jitter::seeded(3);
        let d = backoff(&cfg(), u32::MAX, None, &JitterConfig::default(), &mut rng);
        assert!(d <= Duration::from_secs(60));
    }
}
