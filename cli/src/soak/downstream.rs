//! The simulated downstreams, counting from their own side: each knows its cap and
//! counts every call that arrives while `cap` are already inside, whatever the scheduler
//! believes. A call is inside from [`Downstream::enter`] until its guard is dropped, so a
//! job that panics, hangs until its lease or is cancelled leaves when its future goes.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// One downstream with a hard concurrency limit.
#[derive(Debug)]
pub struct Downstream {
    name: &'static str,
    cap: u32,
    inside: AtomicU32,
    peak: AtomicU32,
    calls: AtomicU64,
    over_cap: AtomicU64,
}

/// What a downstream saw, at the end of a run.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DownstreamReport {
    /// The resource whose jobs call it.
    pub name: &'static str,
    /// Its limit (the resource's `max_concurrent`).
    pub cap: u32,
    /// Calls received.
    pub calls: u64,
    /// Most calls inside at once.
    pub peak: u32,
    /// Calls that arrived while `cap` were inside.
    pub over_cap: u64,
    /// Calls inside now (0 after a clean shutdown).
    pub inside: u32,
}

impl Downstream {
    /// A downstream named after its resource, allowing `cap` calls at once.
    pub fn new(name: &'static str, cap: u32) -> Arc<Self> {
        Arc::new(Self {
            name,
            cap,
            inside: AtomicU32::new(0),
            peak: AtomicU32::new(0),
            calls: AtomicU64::new(0),
            over_cap: AtomicU64::new(0),
        })
    }

    /// A call arrives; it stays inside until the guard is dropped.
    pub fn enter(self: &Arc<Self>) -> Inside {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let now = self.inside.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak.fetch_max(now, Ordering::AcqRel);
        if now > self.cap {
            self.over_cap.fetch_add(1, Ordering::Relaxed);
        }
        Inside(self.clone())
    }

    /// Its counters now.
    pub fn report(&self) -> DownstreamReport {
        DownstreamReport {
            name: self.name,
            cap: self.cap,
            calls: self.calls.load(Ordering::Relaxed),
            peak: self.peak.load(Ordering::Acquire),
            over_cap: self.over_cap.load(Ordering::Relaxed),
            inside: self.inside.load(Ordering::Acquire),
        }
    }
}

/// A call inside a downstream; leaving is dropping it.
#[derive(Debug)]
pub struct Inside(Arc<Downstream>);

impl Drop for Inside {
    fn drop(&mut self) {
        self.0.inside.fetch_sub(1, Ordering::AcqRel);
    }
}

/// When the flaky downstream fails: healthy, then sick, in a fixed cycle from the start
/// of the run, so its breaker opens in every sick spell and closes in the healthy one.
#[derive(Debug, Clone, Copy)]
pub struct Flakiness {
    origin: Instant,
}

/// Length of one healthy + sick cycle.
const CYCLE: Duration = Duration::from_secs(9);
/// Where in the cycle the sick spell starts and ends.
const SICK: (Duration, Duration) = (Duration::from_secs(2), Duration::from_secs(5));
/// Share of calls failed while healthy and while sick.
const HEALTHY_ERRORS: f64 = 0.02;
const SICK_ERRORS: f64 = 0.8;

impl Flakiness {
    /// A cycle starting now.
    pub fn starting_now() -> Self {
        Self {
            origin: Instant::now(),
        }
    }

    /// Whether a call now fails, given a uniform `roll` in `[0, 1)`.
    pub fn fails(&self, roll: f64) -> bool {
        let into = Duration::from_nanos((self.origin.elapsed().as_nanos() % CYCLE.as_nanos()) as u64);
        let sick = into >= SICK.0 && into < SICK.1;
        roll < if sick { SICK_ERRORS } else { HEALTHY_ERRORS }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_over_the_cap_are_counted_from_the_downstream_side() {
        let d = Downstream::new("store", 2);
        let a = d.enter();
        let b = d.enter();
        assert_eq!(d.report().over_cap, 0);
        let c = d.enter();
        assert_eq!((d.report().over_cap, d.report().peak), (1, 3));
        drop((a, b, c));
        assert_eq!(d.report().inside, 0);
    }
}
