//! The runtime's metrics, sent through the `metrics` facade by the supervisor, the one
//! place that sees every grant and every outcome. The service installs the exporter
//! (a Prometheus recorder, say) before it starts the runtime; without one every call
//! here is a no-op.
//!
//! # Implementation details
//!
//! Two paths, so that the cost per job stays small:
//!
//! - Per job, only the wait and run time histograms (and, when configured, the per-tenant
//!   outcome counters and a quota refusal's counter). Their handles are registered once
//!   per resource (tenant, limit) and kept, so no label string is built per job.
//! - Everything else (outcome counts, gauges, breaker, limiter, retry and backend
//!   counters) is read from the core's snapshot and set as absolute values by
//!   [`Metrics::publish`]: at most once a second while the supervisor works, and on every
//!   [`crate::Runtime::stats`] call, so a scrape that asks for stats first sees the exact
//!   counts. The counters are the core's own, so the exported counts add up the way the
//!   outcomes do.
//!
//! Handles are registered when first used: a recorder installed after the runtime
//! started gets the publish path's series but not histograms already registered.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Histogram};
use weir::{BreakerState, OutcomeKind, ResourceId, SkipReason, StatsSnapshot, TenantId};

use crate::redis_pool::BackendSnapshot;

/// How often the supervisor publishes the snapshot-derived series on its own.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// The `outcome` label of each [`OutcomeKind`], by [`OutcomeKind::index`].
const OUTCOMES: [(OutcomeKind, &str); 5] = [
    (OutcomeKind::Completed, "completed"),
    (OutcomeKind::Failed, "failed"),
    (OutcomeKind::TimedOut, "timed_out"),
    (OutcomeKind::Skipped, "skipped"),
    (OutcomeKind::Cancelled, "cancelled"),
];

fn outcome_label(kind: OutcomeKind) -> &'static str {
    OUTCOMES
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or("unknown", |(_, l)| l)
}

/// Per-job handles of one resource.
struct PerResource {
    wait: Histogram,
    run: Histogram,
}

impl PerResource {
    fn new(resource: &ResourceId) -> Self {
        let r = resource.to_string();
        Self {
            wait: histogram!("weir_job_wait_seconds", "resource" => r.clone()),
            run: histogram!("weir_job_run_seconds", "resource" => r),
        }
    }
}

/// Bounded tenant labels: the first `max` tenants seen keep their name, the rest are
/// `other`.
struct TenantLabels {
    max: usize,
    named: HashMap<TenantId, Arc<str>>,
    /// Outcome counters by (resource, label).
    counters: HashMap<(ResourceId, Arc<str>), [Counter; 5]>,
}

impl TenantLabels {
    fn label(&mut self, tenant: &TenantId) -> Arc<str> {
        if let Some(l) = self.named.get(tenant) {
            return l.clone();
        }
        if self.named.len() < self.max {
            let l: Arc<str> = Arc::from(tenant.as_str());
            self.named.insert(tenant.clone(), l.clone());
            return l;
        }
        Arc::from("other")
    }

    fn ended(&mut self, resource: &ResourceId, tenant: &TenantId, kind: OutcomeKind) {
        let label = self.label(tenant);
        let counters = self
            .counters
            .entry((resource.clone(), label.clone()))
            .or_insert_with(|| {
                OUTCOMES.map(|(_, outcome)| {
                    counter!("weir_tenant_jobs_total",
                        "resource" => resource.to_string(),
                        "tenant" => label.to_string(),
                        "outcome" => outcome)
                })
            });
        counters[kind.index()].increment(1);
    }
}

/// The supervisor's metrics state (see the module docs).
pub(crate) struct Metrics {
    resources: Vec<(ResourceId, PerResource)>,
    refusals: HashMap<String, Counter>,
    tenants: Option<TenantLabels>,
    published_at: Option<Duration>,
}

impl Metrics {
    pub(crate) fn new(config: &weir::Config) -> Self {
        let max = config.metrics.tenant_labels as usize;
        Self {
            resources: Vec::new(),
            refusals: HashMap::new(),
            tenants: (max > 0).then(|| TenantLabels {
                max,
                named: HashMap::new(),
                counters: HashMap::new(),
            }),
            published_at: None,
        }
    }

    fn of(&mut self, resource: &ResourceId) -> &PerResource {
        // A short list scanned by name: services have a handful of resources, and this
        // is cheaper per job than hashing the name.
        let i = match self.resources.iter().position(|(r, _)| r == resource) {
            Some(i) => i,
            None => {
                self.resources
                    .push((resource.clone(), PerResource::new(resource)));
                self.resources.len() - 1
            }
        };
        &self.resources[i].1
    }

    /// A job of `resource` was granted a slot after waiting `waited`.
    pub(crate) fn granted(&mut self, resource: Option<&ResourceId>, waited: Duration) {
        if let Some(resource) = resource {
            self.of(resource).wait.record(waited.as_secs_f64());
        }
    }

    /// A job that held a slot of `resource` for `ran` (if it held one) ended `kind`.
    pub(crate) fn ended(
        &mut self,
        resource: &ResourceId,
        tenant: Option<&TenantId>,
        ran: Option<Duration>,
        kind: OutcomeKind,
    ) {
        if let Some(ran) = ran {
            self.of(resource).run.record(ran.as_secs_f64());
        }
        if let (Some(tenants), Some(tenant)) = (&mut self.tenants, tenant) {
            tenants.ended(resource, tenant, kind);
        }
    }

    /// A job was skipped: a quota's refusal is counted under its limit.
    pub(crate) fn skipped(&mut self, reason: &SkipReason) {
        let limit = match reason {
            SkipReason::QuotaExceeded { limit, .. } | SkipReason::OverBudget { limit, .. } => limit,
            // NoSlot, and reasons added later: counted in `weir_jobs_total` only.
            _ => return,
        };
        // Limits are configured quota names, so this map is bounded by the configuration.
        if let Some(c) = self.refusals.get(limit.as_str()) {
            c.increment(1);
            return;
        }
        let c = counter!("weir_quota_refusals_total", "limit" => limit.clone());
        c.increment(1);
        self.refusals.insert(limit.clone(), c);
    }

    /// Where `resource`'s bodies run now: on body threads (1), or on the supervisor's
    /// thread (0).
    pub(crate) fn bodies_on_threads(&self, resource: &ResourceId, threads: bool) {
        let value = if threads { 1.0 } else { 0.0 };
        gauge!("weir_bodies_on_body_threads", "resource" => resource.to_string()).set(value);
    }

    /// True when the snapshot-derived series are due for their periodic publish.
    pub(crate) fn due(&self, now: Duration) -> bool {
        self.published_at
            .is_none_or(|at| now.saturating_sub(at) >= PUBLISH_EVERY)
    }

    /// Sets the snapshot-derived series (see the module docs).
    pub(crate) fn publish(
        &mut self,
        snap: &StatsSnapshot,
        quota_admissions: u64,
        backends: &BTreeMap<String, BackendSnapshot>,
    ) {
        self.published_at = Some(snap.at);
        for (name, r) in &snap.resources {
            let res = || [("resource", name.clone())];
            counter!("weir_jobs_submitted_total", &res()).absolute(r.submitted);
            let counts = [
                r.outcomes.completed,
                r.outcomes.failed,
                r.outcomes.timed_out,
                r.outcomes.skipped,
                r.outcomes.cancelled,
            ];
            for (kind, count) in [
                OutcomeKind::Completed,
                OutcomeKind::Failed,
                OutcomeKind::TimedOut,
                OutcomeKind::Skipped,
                OutcomeKind::Cancelled,
            ]
            .into_iter()
            .zip(counts)
            {
                counter!("weir_jobs_total", "resource" => name.clone(), "outcome" => outcome_label(kind))
                    .absolute(count);
            }
            gauge!("weir_slots", &res()).set(r.cap);
            // The adaptive limit where one is configured; else the cap.
            gauge!("weir_limit", &res()).set(r.limit);
            gauge!("weir_jobs_in_flight", &res()).set(r.in_flight);
            gauge!("weir_jobs_peak_in_flight", &res()).set(r.peak_in_flight);
            gauge!("weir_jobs_queued", &res()).set(r.queued as f64);
            gauge!("weir_jobs_deferred", &res()).set(r.deferred as f64);
            gauge!("weir_jobs_overdue", &res()).set(r.overdue as f64);
            let g = &r.resilience;
            if let Some(state) = g.breaker {
                let v = match state {
                    BreakerState::Closed => 0.0,
                    BreakerState::HalfOpen => 1.0,
                    BreakerState::Open => 2.0,
                };
                gauge!("weir_breaker_state", &res()).set(v);
                counter!("weir_breaker_transitions_total", &res()).absolute(g.transitions);
                counter!("weir_breaker_opened_total", &res()).absolute(g.opened);
            }
            counter!("weir_limiter_waits_total", &res()).absolute(g.limiter_waits);
            counter!("weir_attempts_total", &res()).absolute(g.attempts);
            counter!("weir_retries_total", &res()).absolute(g.retries);
            counter!("weir_fallbacks_total", &res()).absolute(g.fallbacks);
        }
        counter!("weir_quota_admissions_total").absolute(quota_admissions);
        for (name, b) in backends {
            let res = || [("resource", name.clone())];
            counter!("weir_backend_grants_total", &res()).absolute(b.grants);
            counter!("weir_backend_renewals_total", &res()).absolute(b.renewals);
            counter!("weir_backend_round_trips_total", &res()).absolute(b.round_trips);
            counter!("weir_backend_errors_total", &res()).absolute(b.backend_errors);
            counter!("weir_backend_lost_leases_total", &res()).absolute(b.lost_leases);
            counter!("weir_backend_fail_open_admissions_total", &res()).absolute(b.fail_open_admissions);
        }
    }
}
