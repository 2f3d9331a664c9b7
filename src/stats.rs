//! Counters and latency histograms per resource, and the snapshot the runtime reports.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::job::{OutcomeKind, TenantId};
pub use crate::tenant_ledger::TenantFairness;

/// Live statistics of one resource (owned by the scheduler core).
#[derive(Debug)]
pub struct ResourceStats {
    /// Jobs submitted (children and batch members each count once).
    pub submitted: u64,
    /// Terminal outcomes, indexed by [`OutcomeKind::index`].
    pub outcomes: [u64; 5],
    wait_us: Histogram<u64>,
    run_us: Histogram<u64>,
}

impl Default for ResourceStats {
    fn default() -> Self {
        Self {
            submitted: 0,
            outcomes: [0; 5],
            wait_us: new_histogram(),
            run_us: new_histogram(),
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    // 3 significant figures, auto-resizing: bounded error, no upper limit to configure.
    let mut h = Histogram::new(3).expect("3 significant figures is a valid precision");
    h.auto(true);
    h
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl ResourceStats {
    /// Records how long a job waited for its slot.
    pub fn record_wait(&mut self, wait: Duration) {
        let _ = self.wait_us.record(micros(wait));
    }

    /// Records how long a job held its slot.
    pub fn record_run(&mut self, run: Duration) {
        let _ = self.run_us.record(micros(run));
    }

    /// Counts a terminal outcome.
    pub fn record_outcome(&mut self, kind: OutcomeKind) {
        self.outcomes[kind.index()] += 1;
    }

    /// Wait-time percentiles so far.
    pub fn wait(&self) -> Percentiles {
        Percentiles::of(&self.wait_us)
    }

    /// Run-time percentiles so far.
    pub fn run(&self) -> Percentiles {
        Percentiles::of(&self.run_us)
    }
}

/// Latency percentiles (from hdrhistogram, microsecond resolution).
///
/// Serialized with these field names, durations as seconds (`0.0125`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    /// Samples recorded.
    pub count: u64,
    /// Median.
    #[serde(serialize_with = "crate::serde_secs::secs")]
    pub p50: Duration,
    /// 90th percentile.
    #[serde(serialize_with = "crate::serde_secs::secs")]
    pub p90: Duration,
    /// 99th percentile.
    #[serde(serialize_with = "crate::serde_secs::secs")]
    pub p99: Duration,
    /// 99.9th percentile.
    #[serde(serialize_with = "crate::serde_secs::secs")]
    pub p999: Duration,
    /// Largest sample.
    #[serde(serialize_with = "crate::serde_secs::secs")]
    pub max: Duration,
}

impl Percentiles {
    /// Reads the percentiles of a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        let q = |p: f64| Duration::from_micros(h.value_at_quantile(p));
        Self {
            count: h.len(),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: Duration::from_micros(h.max()),
        }
    }
}

/// Counts per terminal outcome (serialized with these field names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OutcomeCounts {
    /// Completed jobs.
    pub completed: u64,
    /// Failed jobs.
    pub failed: u64,
    /// Timed-out jobs.
    pub timed_out: u64,
    /// Skipped jobs.
    pub skipped: u64,
    /// Cancelled jobs.
    pub cancelled: u64,
}

impl OutcomeCounts {
    /// From an array indexed by [`OutcomeKind::index`].
    pub fn from_array(a: [u64; 5]) -> Self {
        Self {
            completed: a[OutcomeKind::Completed.index()],
            failed: a[OutcomeKind::Failed.index()],
            timed_out: a[OutcomeKind::TimedOut.index()],
            skipped: a[OutcomeKind::Skipped.index()],
            cancelled: a[OutcomeKind::Cancelled.index()],
        }
    }

    /// Sum of all outcomes.
    pub fn total(&self) -> u64 {
        self.completed + self.failed + self.timed_out + self.skipped + self.cancelled
    }

    /// Adds another set of counts.
    pub fn add(&mut self, other: &OutcomeCounts) {
        self.completed += other.completed;
        self.failed += other.failed;
        self.timed_out += other.timed_out;
        self.skipped += other.skipped;
        self.cancelled += other.cancelled;
    }
}

/// A point-in-time view of one resource (serialized with these field names).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ResourceSnapshot {
    /// Slots configured (`max_concurrent`; the ceiling of an adaptive limit).
    pub cap: u32,
    /// Slots the pool may hold now: `cap`, or the adaptive limit's current value.
    pub limit: u32,
    /// Slots held now.
    pub in_flight: u32,
    /// Most slots held at once.
    pub peak_in_flight: u32,
    /// Jobs waiting for a slot now.
    pub queued: u64,
    /// Jobs held back by fan-out batching now (not yet waiting for a slot).
    pub deferred: u64,
    /// Jobs whose lease expired and whose cancellation the worker has not yet confirmed.
    pub overdue: u64,
    /// Jobs submitted.
    pub submitted: u64,
    /// Terminal outcomes so far.
    pub outcomes: OutcomeCounts,
    /// Time from becoming eligible to being granted a slot.
    pub wait: Percentiles,
    /// Time a slot was held.
    pub run: Percentiles,
    /// Per-tenant fairness: Jain's index over slot-time while backlogged, the worst
    /// tenant's p99 wait.
    pub fairness: TenantFairness,
    /// Rate limit, breaker, retry and fallback counters (zero for plain resources).
    pub resilience: crate::guard::ResilienceStats,
}

/// A point-in-time view of the whole runtime, per resource.
///
/// Serialized with these field names, durations as seconds:
///
/// ```
/// let json = serde_json::to_value(weir::StatsSnapshot::default()).unwrap();
/// assert_eq!(json, serde_json::json!({ "at": 0.0, "resources": {}, "quota_tenants": 0, "reconfigurations": 0 }));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// Scheduler time at which the snapshot was taken.
    #[serde(serialize_with = "crate::serde_secs::secs")]
    pub at: Duration,
    /// Per resource, by name.
    pub resources: BTreeMap<String, ResourceSnapshot>,
    /// Tenants whose quota usage the core holds now (see
    /// [`Quotas::tracked_tenants`](crate::Quotas::tracked_tenants)): a tenant is kept
    /// until every window of its quotas has passed since its last admission and nothing
    /// is reserved, so this follows the recently active tenants, not every tenant ever
    /// seen. 0 when no per-tenant quota is configured.
    pub quota_tenants: u64,
    /// Live configuration changes applied so far (each accepted `reconfigure` that
    /// changed a setting, and each `set_max_concurrent`); the limits in force show per
    /// resource in [`ResourceSnapshot::cap`] and [`ResourceSnapshot::limit`].
    pub reconfigurations: u64,
}

impl StatsSnapshot {
    /// Outcomes summed over resources.
    pub fn outcomes(&self) -> OutcomeCounts {
        let mut total = OutcomeCounts::default();
        for r in self.resources.values() {
            total.add(&r.outcomes);
        }
        total
    }

    /// Jobs submitted, summed over resources.
    pub fn submitted(&self) -> u64 {
        self.resources.values().map(|r| r.submitted).sum()
    }

    /// Jobs in flight, summed over resources.
    pub fn in_flight(&self) -> u64 {
        self.resources.values().map(|r| u64::from(r.in_flight)).sum()
    }

    /// The lowest Jain's index over resources (see [`TenantFairness::jain_index`]).
    pub fn jain_index(&self) -> Option<f64> {
        self.resources
            .values()
            .filter_map(|r| r.fairness.jain_index)
            .reduce(f64::min)
    }

    /// The tenant with the worst p99 wait on any resource, and that wait.
    pub fn worst_tenant_p99_wait(&self) -> Option<(TenantId, Duration)> {
        self.resources
            .values()
            .filter_map(|r| r.fairness.worst_p99_wait.clone())
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
    }

    /// Tenants with jobs waiting for or holding a slot, summed over resources (a tenant
    /// active on two resources counts twice): the entries the fair queues' ledgers keep.
    pub fn backlogged_tenants(&self) -> u64 {
        self.resources
            .values()
            .map(|r| r.fairness.active_tenants as u64)
            .sum()
    }

    /// Jobs queued or deferred, summed over resources.
    pub fn queued(&self) -> u64 {
        self.resources.values().map(|r| r.queued + r.deferred).sum()
    }
}
