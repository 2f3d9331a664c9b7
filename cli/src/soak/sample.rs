//! One sample of a running soak: memory, throughput, what waits and runs, tenant state
//! and the outcome counts, as the runtime's statistics and `/proc` report them.

use std::time::Duration;

use tokio::time::Instant;
use weir::{OutcomeCounts, StatsSnapshot};
use weir_actors::Runtime;

use crate::bench::memory;

/// Outcome counts, serialisable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Completed.
    pub completed: u64,
    /// Failed (errors and panics; retried jobs count once, by their last attempt).
    pub failed: u64,
    /// Timed out at their lease (the injected hangs).
    pub timed_out: u64,
    /// Skipped (quota refusals, waits past their timeout).
    pub skipped: u64,
    /// Cancelled (by their caller, or by shutdown).
    pub cancelled: u64,
}

impl Counts {
    /// Their sum.
    pub fn total(&self) -> u64 {
        self.completed + self.failed + self.timed_out + self.skipped + self.cancelled
    }
}

impl From<OutcomeCounts> for Counts {
    fn from(c: OutcomeCounts) -> Self {
        Self {
            completed: c.completed,
            failed: c.failed,
            timed_out: c.timed_out,
            skipped: c.skipped,
            cancelled: c.cancelled,
        }
    }
}

/// One sample.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Sample {
    /// Seconds since the workload started.
    pub at_s: f64,
    /// Resident set size of the process (0 where `/proc` is missing).
    pub rss_bytes: u64,
    /// Jobs that ended per second since the previous sample (every job the runtime ran:
    /// leaves, organisations, batches, checks).
    pub jobs_per_sec: f64,
    /// Slots held now, over resources.
    pub in_flight: u64,
    /// Jobs waiting for a slot or held back by fan-out, over resources.
    pub queued: u64,
    /// Tenants whose quota state the core holds ([`StatsSnapshot::quota_tenants`]).
    pub tenants_tracked: u64,
    /// Tenants with jobs waiting or running, summed over resources
    /// ([`StatsSnapshot::backlogged_tenants`]).
    pub tenants_backlogged: u64,
    /// Tenants that have ever been active, as the workload counts them.
    pub tenants_seen: u64,
    /// Jobs the runtime accepted so far.
    pub submitted: u64,
    /// Outcomes the runtime counted so far.
    pub outcomes: Counts,
}

/// Takes samples; remembers the previous one for the rates.
#[derive(Debug)]
pub struct Sampler {
    start: Instant,
    previous: Option<(Instant, u64)>,
    /// Every sample so far, in time order.
    pub samples: Vec<Sample>,
}

impl Sampler {
    /// A sampler whose clock starts at `start`.
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            previous: Some((start, 0)),
            samples: Vec::new(),
        }
    }

    /// Reads the runtime's statistics and the process's RSS; returns the new sample.
    pub async fn take(&mut self, runtime: &Runtime, tenants_seen: u64) -> &Sample {
        let stats = runtime.stats().await;
        let now = Instant::now();
        self.record(now, &stats, tenants_seen);
        self.samples.last().expect("just pushed")
    }

    fn record(&mut self, now: Instant, stats: &StatsSnapshot, tenants_seen: u64) {
        let ended = stats.outcomes().total();
        let jobs_per_sec = match self.previous {
            Some((at, before)) if now > at => (ended - before.min(ended)) as f64 / (now - at).as_secs_f64(),
            _ => 0.0,
        };
        self.previous = Some((now, ended));
        self.samples.push(Sample {
            at_s: (now - self.start).as_secs_f64(),
            rss_bytes: memory::rss().unwrap_or(0),
            jobs_per_sec,
            in_flight: stats.in_flight(),
            queued: stats.queued(),
            tenants_tracked: stats.quota_tenants,
            tenants_backlogged: stats.backlogged_tenants(),
            tenants_seen,
            submitted: stats.submitted(),
            outcomes: stats.outcomes().into(),
        });
    }
}

/// The first sample at or after `warm_up`, if any.
pub fn after_warm_up(samples: &[Sample], warm_up: Duration) -> Option<&Sample> {
    samples.iter().find(|s| s.at_s >= warm_up.as_secs_f64())
}
