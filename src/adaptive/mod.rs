//! The adaptive concurrency limit of one resource (`[resources.NAME.adaptive]`), after
//! Netflix's concurrency-limits: a number between `min` and the resource's
//! `max_concurrent` (its ceiling) that the grant loop uses instead of the cap.
//!
//! # Implementation details
//!
//! The limit is a pure function of its state, the signals the core feeds it, and `now`:
//!
//! * A completed job gives a latency sample (its run time) and the slots in flight when
//!   it ended; the algorithm ([`aimd`] or [`gradient2`]) may raise or lower the limit.
//! * A drop (the body said the downstream refused as overloaded, or the job outlived its
//!   lease) cuts the limit by [`BACKOFF`], once per generation: a drop from a call granted
//!   before the last cut says what the old, higher limit did, and is ignored (TCP NewReno
//!   cuts once per window of packets sent before its recovery point, for the same
//!   reason). Without it, a hundred calls refused at once would cut a hundred times and
//!   the limit would fall to `min`. Grants are numbered per resource, so "before" is
//!   exact even for calls granted and refused at the same instant.
//! * Lowering the limit preempts nothing: the pool's cap drops, calls in flight above it
//!   finish, and no new grant is made until fewer than the limit are in flight.
//!
//! The state is a real number (AIMD adds `1 / limit` per completion); the pool sees it
//! rounded down, clamped to `[min, ceiling]`.

mod aimd;
mod gradient2;
pub(crate) mod rate;

use std::time::Duration;

use crate::config::{AdaptiveAlgorithm, AdaptiveConfig};

/// What a drop multiplies the limit by.
pub(crate) const BACKOFF: f64 = 0.9;

/// One signal from one call of the resource.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Signal {
    /// The call ran to a successful end in `rtt`, with `in_flight` calls (itself
    /// included) in flight when it ended.
    Completed { rtt: Duration, in_flight: u32 },
    /// The downstream refused the call as over its capacity, or the call outlived its
    /// lease; it was its resource's grant number `grant`.
    Dropped { grant: u64 },
}

/// The algorithm's state.
#[derive(Debug)]
enum Rule {
    Aimd(aimd::Aimd),
    Gradient2(gradient2::Gradient2),
}

/// The current limit of one resource and what moves it.
#[derive(Debug)]
pub(crate) struct AdaptiveLimit {
    rule: Rule,
    min: f64,
    ceiling: f64,
    /// The limit as a real number, within `[min, ceiling]`.
    estimate: f64,
    /// Grants made when the limit was last cut; drops from those calls are ignored.
    recover: u64,
}

impl AdaptiveLimit {
    /// The limit of a resource configured with `config`, under `ceiling` (its
    /// `max_concurrent`; validation keeps `min <= initial <= ceiling`).
    pub(crate) fn new(config: &AdaptiveConfig, ceiling: u32) -> Self {
        let ceiling = f64::from(ceiling.max(1));
        let min = f64::from(config.min.max(1)).min(ceiling);
        let rule = match config.algorithm {
            AdaptiveAlgorithm::Aimd => Rule::Aimd(aimd::Aimd),
            AdaptiveAlgorithm::Gradient2 => Rule::Gradient2(gradient2::Gradient2::default()),
        };
        Self {
            rule,
            min,
            ceiling,
            estimate: f64::from(config.initial_limit()).clamp(min, ceiling),
            recover: 0,
        }
    }

    /// The floor of the limit.
    pub(crate) fn min(&self) -> u32 {
        self.min as u32
    }

    /// Moves the ceiling (at least `min`, which the caller checked); the limit comes
    /// down under it at once if it was above. Returns the limit.
    pub(crate) fn set_ceiling(&mut self, ceiling: u32) -> u32 {
        self.ceiling = f64::from(ceiling).max(self.min);
        self.estimate = self.estimate.min(self.ceiling);
        self.limit()
    }

    /// The limit now: slots the pool may hold.
    pub(crate) fn limit(&self) -> u32 {
        self.estimate.floor() as u32
    }

    /// Takes one signal at `now`, when the resource has made `grants` grants so far;
    /// returns the new limit when it changed.
    pub(crate) fn observe(&mut self, signal: Signal, grants: u64, now: Duration) -> Option<u32> {
        let before = self.limit();
        let next = match signal {
            Signal::Completed { rtt, in_flight } => {
                let limit = self.estimate;
                match &mut self.rule {
                    Rule::Aimd(rule) => rule.completed(limit, in_flight),
                    Rule::Gradient2(rule) => rule.completed(limit, rtt, in_flight, now),
                }
            }
            Signal::Dropped { grant } => {
                if grant <= self.recover {
                    return None;
                }
                self.recover = grants;
                self.estimate * BACKOFF
            }
        };
        // NaN cannot come out of the rules (their inputs are finite), but a limit must
        // never leave its bounds whatever they return.
        self.estimate = if next.is_nan() {
            self.estimate
        } else {
            next.clamp(self.min, self.ceiling)
        };
        let after = self.limit();
        (after != before).then_some(after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aimd(min: u32, initial: u32, ceiling: u32) -> AdaptiveLimit {
        let config = AdaptiveConfig {
            algorithm: AdaptiveAlgorithm::Aimd,
            min,
            initial: Some(initial),
        };
        AdaptiveLimit::new(&config, ceiling)
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn one_cut_per_generation_of_calls() {
        let mut l = aimd(1, 100, 150);
        let t = Duration::from_secs(10);
        // 100 calls granted; the 60th is refused.
        assert_eq!(l.observe(Signal::Dropped { grant: 60 }, 100, t), Some(90));
        // Granted before the cut: it reflects the old limit.
        assert_eq!(l.observe(Signal::Dropped { grant: 100 }, 100, t), None);
        // Granted after the cut (at the same instant): the new limit is still too high.
        assert_eq!(l.observe(Signal::Dropped { grant: 101 }, 101, t), Some(81));
    }

    #[test]
    fn never_below_min_nor_above_ceiling() {
        let mut l = aimd(5, 6, 8);
        for i in 1..50u64 {
            l.observe(Signal::Dropped { grant: i }, i, Duration::from_millis(i));
        }
        assert_eq!(l.limit(), 5);
        for _ in 0..10_000 {
            l.observe(
                Signal::Completed {
                    rtt: MS,
                    in_flight: 8,
                },
                50,
                Duration::from_secs(1),
            );
        }
        assert_eq!(l.limit(), 8);
    }
}
