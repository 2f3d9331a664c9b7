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
//!
//! Every series is described (HELP text, and its unit) when the supervisor starts, so an
//! exporter's output passes `promtool check metrics`. The two durations are histograms
//! when the exporter is given buckets for them ([`DURATION_BUCKETS`]): a histogram's
//! buckets add up across replicas, where a summary's quantiles, computed per process,
//! cannot be aggregated.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter, Histogram, Unit,
};
use weir::{BreakerState, OutcomeKind, ResourceId, SkipReason, StatsSnapshot, TenantId};

use crate::redis_pool::BackendSnapshot;

/// How often the supervisor publishes the snapshot-derived series on its own.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// Default buckets, in seconds, for `weir_job_wait_seconds` and `weir_job_run_seconds`:
/// from 1 ms to 10 minutes, roughly three per decade, so a p50 and a p99 of a wait or a
/// run anywhere in that range come out within a bucket's width. An exporter renders the
/// two as histograms when given these (metrics-exporter-prometheus:
/// `PrometheusBuilder::set_buckets_for_metric(Matcher::Prefix("weir_job_".into()),
/// weir_actors::DURATION_BUCKETS)`); without buckets it renders summaries, whose
/// quantiles cannot be aggregated across replicas.
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0,
];

/// HELP text of every series the runtime exports, given to the recorder once.
fn describe() {
    let seconds = |name: &'static str, help: &'static str| describe_histogram!(name, Unit::Seconds, help);
    seconds(
        "weir_job_wait_seconds",
        "Time a job waited from becoming eligible to being granted a slot, per resource.",
    );
    seconds("weir_job_run_seconds", "Time a job held its slot, per resource.");
    let count = |name: &'static str, help: &'static str| describe_counter!(name, Unit::Count, help);
    count("weir_jobs_submitted_total", "Jobs submitted, per resource.");
    count(
        "weir_jobs_total",
        "Jobs ended, per resource and outcome (completed, failed, timed_out, skipped, cancelled).",
    );
    count(
        "weir_jobs_skipped_total",
        "Jobs skipped, per resource and reason (no_slot, quota_exceeded, quota_unavailable, over_budget).",
    );
    count(
        "weir_tenant_jobs_total",
        "Jobs ended, per resource, tenant (the first metrics.tenant_labels seen; the rest are other) and outcome.",
    );
    count(
        "weir_quota_refusals_total",
        "Jobs a quota or cost budget refused, per limit (quota/window or quota/cost).",
    );
    count(
        "weir_quota_admissions_total",
        "Jobs the quotas admitted (each passed every quota that applies to it).",
    );
    count(
        "weir_quota_cost_charged_total",
        "Cost charged against the cost budgets, in the unit of the jobs' cost estimates.",
    );
    count(
        "weir_breaker_transitions_total",
        "Circuit breaker state changes, per resource.",
    );
    count(
        "weir_breaker_opened_total",
        "Times a resource's circuit breaker opened.",
    );
    count(
        "weir_limiter_waits_total",
        "Grants the rate limit postponed, per resource.",
    );
    count(
        "weir_attempts_total",
        "Attempts granted (first attempts and retries), per resource.",
    );
    count(
        "weir_retries_total",
        "Failed attempts scheduled to run again, per resource.",
    );
    count(
        "weir_fallbacks_total",
        "Jobs moved to the resource's fallback while its breaker was open.",
    );
    count(
        "weir_backend_grants_total",
        "Slots a shared (Redis) backend granted, per resource (quotas for the shared quotas).",
    );
    count(
        "weir_backend_renewals_total",
        "Lease renewals sent to a shared backend, per resource.",
    );
    count(
        "weir_backend_round_trips_total",
        "Round trips to a shared backend, per resource.",
    );
    count(
        "weir_backend_errors_total",
        "Shared backend calls that failed (Redis down, timed out), per resource.",
    );
    count(
        "weir_backend_lost_leases_total",
        "Leases a shared backend no longer held when renewed, per resource.",
    );
    count(
        "weir_backend_fail_open_admissions_total",
        "Jobs admitted without the shared backend's check while it failed (on_failure = fail_open_local).",
    );
    let gauge = |name: &'static str, help: &'static str| describe_gauge!(name, Unit::Count, help);
    gauge("weir_slots", "Slots configured (max_concurrent), per resource.");
    gauge(
        "weir_limit",
        "Slots the pool may hold now: the adaptive limit where one is configured, else the slots.",
    );
    gauge(
        "weir_limit_min",
        "The adaptive limit's floor (adaptive.min), per resource with an adaptive limit.",
    );
    gauge("weir_jobs_in_flight", "Slots held now, per resource.");
    gauge(
        "weir_jobs_peak_in_flight",
        "Most slots held at once so far, per resource.",
    );
    gauge("weir_jobs_queued", "Jobs waiting for a slot now, per resource.");
    gauge(
        "weir_jobs_deferred",
        "Jobs held back by fan-out batching now, per resource.",
    );
    gauge(
        "weir_jobs_overdue",
        "Jobs whose lease expired and whose cancellation is not yet confirmed, per resource.",
    );
    gauge(
        "weir_breaker_state",
        "Circuit breaker state per resource: 0 closed, 1 half-open, 2 open.",
    );
    gauge(
        "weir_bodies_on_body_threads",
        "Where a resource's job bodies run: 1 on body threads, 0 on the supervisor's thread.",
    );
}

/// The `reason` label of a skip.
fn skip_label(reason: &SkipReason) -> &'static str {
    match reason {
        SkipReason::NoSlot => "no_slot",
        SkipReason::QuotaExceeded { .. } => "quota_exceeded",
        SkipReason::QuotaUnavailable { .. } => "quota_unavailable",
        SkipReason::OverBudget { .. } => "over_budget",
        _ => "other",
    }
}

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

/// The core's quota counters, published as they are.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QuotaCounts {
    /// Jobs the quotas admitted.
    pub(crate) admissions: u64,
    /// Cost charged against the cost budgets.
    pub(crate) cost_charged: u64,
}

/// The supervisor's metrics state (see the module docs).
pub(crate) struct Metrics {
    resources: Vec<(ResourceId, PerResource)>,
    refusals: HashMap<String, Counter>,
    /// Skip counters by (resource, reason label): bounded by the resources and the reasons.
    skips: HashMap<(ResourceId, &'static str), Counter>,
    tenants: Option<TenantLabels>,
    published_at: Option<Duration>,
}

impl Metrics {
    pub(crate) fn new(config: &weir::Config) -> Self {
        describe();
        let max = config.metrics.tenant_labels as usize;
        Self {
            resources: Vec::new(),
            refusals: HashMap::new(),
            skips: HashMap::new(),
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

    /// A job (of `resource`, if it is not a resuming parent) was skipped: counted by
    /// reason, and a quota's refusal under its limit.
    pub(crate) fn skipped(&mut self, resource: &ResourceId, reason: &SkipReason) {
        let label = skip_label(reason);
        match self.skips.get(&(resource.clone(), label)) {
            Some(c) => c.increment(1),
            None => {
                let c = counter!("weir_jobs_skipped_total",
                    "resource" => resource.to_string(), "reason" => label);
                c.increment(1);
                self.skips.insert((resource.clone(), label), c);
            }
        }
        let limit = match reason {
            SkipReason::QuotaExceeded { limit, .. } | SkipReason::OverBudget { limit, .. } => limit,
            // NoSlot, and reasons added later: counted by reason only.
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
        config: &weir::Config,
        quotas: QuotaCounts,
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
            if let Some(adaptive) = config.resources.get(name).and_then(|c| c.adaptive) {
                gauge!("weir_limit_min", &res()).set(adaptive.min);
            }
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
        counter!("weir_quota_admissions_total").absolute(quotas.admissions);
        counter!("weir_quota_cost_charged_total").absolute(quotas.cost_charged);
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
