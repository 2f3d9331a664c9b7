//! Counters of one resource's slot backend.

use hdrhistogram::Histogram;
use weir::{BackendKind, Percentiles};

/// Live counters, shared between a resource's broker and the supervisor.
#[derive(Debug)]
pub(crate) struct BackendStats {
    pub(crate) grants: u64,
    pub(crate) renewals: u64,
    pub(crate) lost_leases: u64,
    pub(crate) reclaimed_leases: u64,
    pub(crate) backend_errors: u64,
    pub(crate) fail_open_admissions: u64,
    pub(crate) released: u64,
    pub(crate) released_expired: u64,
    pub(crate) round_trips: u64,
    grant_latency_us: Histogram<u64>,
}

impl Default for BackendStats {
    fn default() -> Self {
        let mut h = Histogram::new(3).expect("3 significant figures is a valid precision");
        h.auto(true);
        Self {
            grants: 0,
            renewals: 0,
            lost_leases: 0,
            reclaimed_leases: 0,
            backend_errors: 0,
            fail_open_admissions: 0,
            released: 0,
            released_expired: 0,
            round_trips: 0,
            grant_latency_us: h,
        }
    }
}

impl BackendStats {
    pub(crate) fn record_grant_latency(&mut self, d: std::time::Duration) {
        let _ = self
            .grant_latency_us
            .record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    pub(crate) fn snapshot(&self, backend: BackendKind) -> BackendSnapshot {
        BackendSnapshot {
            backend,
            grants: self.grants,
            renewals: self.renewals,
            lost_leases: self.lost_leases,
            reclaimed_leases: self.reclaimed_leases,
            backend_errors: self.backend_errors,
            fail_open_admissions: self.fail_open_admissions,
            released: self.released,
            released_expired: self.released_expired,
            round_trips: self.round_trips,
            grant_latency: Percentiles::of(&self.grant_latency_us),
        }
    }
}

/// A point-in-time view of one resource's slot backend ([`crate::Runtime::backend_stats`]);
/// serialized with these field names.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BackendSnapshot {
    /// Which backend grants the resource's slots.
    pub backend: BackendKind,
    /// Global leases granted.
    pub grants: u64,
    /// Lease renewals that succeeded (one per lease per renewal).
    pub renewals: u64,
    /// Leases lost (expired before renewal); their jobs were stopped.
    pub lost_leases: u64,
    /// Expired leases of other holders (e.g. a dead process) removed by this process's
    /// acquires.
    pub reclaimed_leases: u64,
    /// Calls to Redis that failed or timed out.
    pub backend_errors: u64,
    /// Jobs admitted without a lease under `fail_open_local` while Redis was unreachable.
    pub fail_open_admissions: u64,
    /// Leases returned.
    pub released: u64,
    /// Leases that, when returned, had already expired (their job outlived its lease).
    pub released_expired: u64,
    /// Calls to Redis that succeeded (each one round trip): acquires, releases, renewals.
    pub round_trips: u64,
    /// Time from asking for a global lease to getting it (local grant excluded).
    pub grant_latency: Percentiles,
}
