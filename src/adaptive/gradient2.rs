//! Gradient2 (after Netflix's `Gradient2Limit`): the limit follows the ratio of the
//! long-term latency to the recent one. While recent calls are no slower than
//! `TOLERANCE` times the long-term average, the limit grows by a queue allowance;
//! when they are slower, it shrinks in proportion (at most by half per window).
//!
//! Samples are averaged over a window of at least [`WINDOW`] and [`WINDOW_SAMPLES`]
//! calls (Netflix wraps the rule in a `WindowedLimit` for the same reason: one call's
//! latency is noise). The long-term average is an exponential one over
//! [`LONG_WINDOWS`] windows; when recent latency is under half of it (the downstream
//! recovered) it decays towards it, so the limit can grow again.

use std::time::Duration;

/// Shortest window of samples.
const WINDOW: Duration = Duration::from_secs(1);
/// Fewest samples in a window.
const WINDOW_SAMPLES: u32 = 10;
/// Windows the long-term average spans.
const LONG_WINDOWS: f64 = 600.0;
/// Windows averaged plainly before the exponential average takes over.
const WARMUP: u32 = 10;
/// How much slower than the long-term average recent calls may be before the limit
/// shrinks.
const TOLERANCE: f64 = 1.5;
/// Slots added per window while latency is within tolerance (Netflix's default queue).
const QUEUE: f64 = 4.0;
/// Share of the new estimate taken per window.
const SMOOTHING: f64 = 0.2;

/// Gradient2's state: the open window and the long-term latency.
#[derive(Debug, Default)]
pub(super) struct Gradient2 {
    window_start: Option<Duration>,
    samples: u32,
    rtt_sum: f64,
    max_in_flight: u32,
    long_rtt: f64,
    windows: u32,
}

impl Gradient2 {
    /// The limit after a successful call of `rtt` that ended with `in_flight` in flight
    /// at `now`; unchanged until a window closes.
    pub(super) fn completed(&mut self, limit: f64, rtt: Duration, in_flight: u32, now: Duration) -> f64 {
        let start = *self.window_start.get_or_insert(now);
        self.samples += 1;
        self.rtt_sum += rtt.as_secs_f64();
        self.max_in_flight = self.max_in_flight.max(in_flight);
        if now.saturating_sub(start) < WINDOW || self.samples < WINDOW_SAMPLES {
            return limit;
        }
        let short = self.rtt_sum / f64::from(self.samples);
        let in_flight = self.max_in_flight;
        *self = Self {
            long_rtt: self.long_rtt,
            windows: self.windows,
            ..Self::default()
        };
        self.window(limit, short, in_flight)
    }

    /// Closes a window whose mean latency was `short` (seconds).
    fn window(&mut self, limit: f64, short: f64, in_flight: u32) -> f64 {
        self.windows = self.windows.saturating_add(1);
        self.long_rtt = if self.windows <= WARMUP {
            self.long_rtt + (short - self.long_rtt) / f64::from(self.windows)
        } else {
            let factor = 2.0 / (LONG_WINDOWS + 1.0);
            self.long_rtt * (1.0 - factor) + short * factor
        };
        if short > 0.0 && self.long_rtt / short > 2.0 {
            self.long_rtt *= 0.95;
        }
        // Too few calls in flight to say whether more would fit.
        if f64::from(in_flight) * 2.0 < limit {
            return limit;
        }
        let gradient = if short > 0.0 {
            (TOLERANCE * self.long_rtt / short).clamp(0.5, 1.0)
        } else {
            1.0
        };
        let target = limit * gradient + QUEUE;
        limit * (1.0 - SMOOTHING) + target * SMOOTHING
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds one window of `n` calls of latency `rtt` (ms), all at full use, from `at`.
    fn window(rule: &mut Gradient2, limit: f64, rtt: u64, at: &mut Duration) -> f64 {
        let mut out = limit;
        for _ in 0..WINDOW_SAMPLES {
            *at += Duration::from_millis(150);
            out = rule.completed(out, Duration::from_millis(rtt), limit as u32, *at);
        }
        out
    }

    #[test]
    fn grows_under_flat_latency_and_shrinks_when_it_doubles() {
        let (mut rule, mut at) = (Gradient2::default(), Duration::ZERO);
        let mut limit = 20.0;
        for _ in 0..20 {
            limit = window(&mut rule, limit, 100, &mut at);
        }
        assert!(limit > 30.0, "{limit}");
        let high = limit;
        for _ in 0..5 {
            limit = window(&mut rule, limit, 300, &mut at);
        }
        assert!(limit < high * 0.8, "{high} -> {limit}");
    }
}
