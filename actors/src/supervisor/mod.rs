//! The Supervisor actor: the only place a slot is granted.
//!
//! It owns the scheduler core and carries out its decisions: it hands granted jobs to
//! workers, resolves skipped and cancelled jobs, stops jobs whose lease expired, and
//! schedules one wake-up for the core's next deadline. Nothing else in the process
//! admits work, so the per-resource cap is a property of this one actor's state.
//!
//! One file per concern: this one drives the core and hands grants to workers;
//! `inputs.rs` takes in what jobs send back (stop reports, park, unpark, renewals, costs,
//! cancellations); `leases.rs` carries the Redis brokers' answers for resources whose
//! slots or rates are shared; `quotas.rs` the shared quotas' answers; `shutdown.rs` stops
//! the runtime; `queries.rs` answers stats and usage; `limits.rs` carries live
//! configuration changes (`Runtime::reconfigure`, `set_max_concurrent`).

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, AsyncContext, Context, Handler};
use tokio::sync::oneshot;
use tokio::time::Instant;
use weir::engine::BatchSchedule;
use weir::{Event, JobKey, Outcome, ResourceId, Scheduler, SkipReason, StatsSnapshot};

mod breakers;
mod inputs;
mod leases;
mod limits;
mod queries;
mod quotas;
mod shutdown;

pub(crate) use breakers::SharedRefusalBreakers;
pub(crate) use limits::{Published, Reconfigure, SetMaxConcurrent};
pub(crate) use queries::{GetBackendStats, GetStats, GetUsage};
pub(crate) use shutdown::Shutdown;
pub use shutdown::ShutdownReport;

use crate::job::body::ErasedBody;
use crate::job::budget::CallBudget;
use crate::job::context::JobContext;
use crate::job::inbox::Intake;
use crate::job::link::{Drain, Link};
use crate::job::slot::SlotReturn;
use crate::job::stop::{Stop, StopReason};
use crate::metrics::{Metrics, QuotaCounts};
use crate::redis_pool::{Settle, SharedQuotaStore, SharedSlots, Want};
use crate::wake::Wake;
use crate::worker::{Placements, Run, WorkerPool};
use leases::BackendAnswers;
use quotas::QuotaAnswers;

/// A job waiting in the core: a fresh body, or a parked parent's waker.
pub(crate) enum Payload {
    Fresh(Task),
    Resume(oneshot::Sender<()>),
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Payload::Fresh(_) => f.write_str("Fresh"),
            Payload::Resume(_) => f.write_str("Resume"),
        }
    }
}

pub(crate) struct Task {
    body: Box<dyn ErasedBody>,
    stop: Arc<Stop>,
    // No resource name: the core knows the job's resource (and its tenant), and every
    // waiting job holds a `Task`, so a copy here cost each one 16 bytes and kept the name
    // the caller allocated alive.
    budget: Option<Arc<CallBudget>>,
}

pub(crate) struct Supervisor {
    core: Scheduler<Payload>,
    link: Link,
    /// Called once with the last statistics when the supervisor stops (the public
    /// handle keeps them for `stats` after shutdown, and stops its own system).
    on_stopped: Option<Box<dyn FnOnce(StatsSnapshot)>>,
    origin: Instant,
    workers: WorkerPool,
    /// Which thread runs each granted body (see `worker::placement`).
    placements: Placements,
    arbiters: Vec<actix_rt::Arbiter>,
    /// Stop signals of started jobs, indexed by `JobKey::index`.
    running: Vec<Option<(JobKey, Arc<Stop>)>>,
    events: Vec<Event<Payload>>,
    wake: Wake,
    schedule: BatchSchedule,
    shutdown: Option<shutdown::ShutdownState>,
    /// Some resource has a `call_budget` (else submissions skip the lookup).
    any_budget: bool,
    /// Resources whose slots are shared through Redis (see `redis_pool::shared`).
    shared: SharedSlots,
    /// Quotas shared through Redis, when some are (see `redis_pool::quota_broker`).
    quota_store: Option<SharedQuotaStore>,
    /// This pass's admissions for the quota broker, sent as one batch.
    quota_wants: Vec<Want>,
    /// This pass's cost settlements for the quota broker, sent as one batch.
    quota_settles: Vec<Settle>,
    /// The inbox's last batch, kept empty between drains for its capacity.
    intake: Vec<Intake>,
    /// What goes out through the `metrics` facade (see `crate::metrics`).
    metrics: Metrics,
    /// The configuration in force, for the public handle (see `limits.rs`).
    published: Published,
    /// Breaker states at slot refusals, for the public handle (see `breakers.rs`).
    refusal_breakers: SharedRefusalBreakers,
}

impl Supervisor {
    pub(crate) fn new(
        config: weir::Config,
        link: Link,
        on_stopped: Box<dyn FnOnce(StatsSnapshot)>,
        workers: WorkerPool,
        arbiters: Vec<actix_rt::Arbiter>,
        published: Published,
        refusal_breakers: SharedRefusalBreakers,
    ) -> Self {
        let schedule = BatchSchedule::new(config.scheduler.org_batch_size, config.scheduler.batch_delay);
        let any_budget = config.resources.values().any(|r| r.call_budget.is_some());
        let placements = Placements::new(workers.has_threads(), config.runtime.inline_poll_limit);
        Self {
            placements,
            any_budget,
            metrics: Metrics::new(&config),
            core: Scheduler::new(config),
            link,
            on_stopped: Some(on_stopped),
            origin: Instant::now(),
            workers,
            arbiters,
            running: Vec::new(),
            events: Vec::new(),
            wake: Wake::default(),
            schedule,
            shutdown: None,
            shared: SharedSlots::none(),
            quota_store: None,
            quota_wants: Vec::new(),
            quota_settles: Vec::new(),
            intake: Vec::new(),
            published,
            refusal_breakers,
        }
    }

    fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.origin)
    }

    /// Polls the core and carries out its decisions, then schedules the next wake-up.
    fn drive(&mut self, ctx: &mut Context<Self>) {
        let now = self.now();
        let mut events = std::mem::take(&mut self.events);
        self.core.poll(now, &mut events);
        let mut left_waiting = 0u64;
        for event in events.drain(..) {
            match event {
                Event::Granted {
                    key, payload, waited, ..
                } => match payload {
                    Payload::Fresh(task) => {
                        self.metrics.granted(self.core.resource_of(key), waited);
                        // A job that waited for a global lease left the queue at its
                        // local grant (`LeaseWanted`).
                        let leased = self.shared.holds(key);
                        if !leased {
                            left_waiting += 1;
                        }
                        let token = if leased { self.shared.token(key) } else { None };
                        self.start(key, task, token, now);
                    }
                    // If the parent stopped meanwhile its task reports Done, which returns
                    // this slot.
                    Payload::Resume(tx) => {
                        let _ = tx.send(());
                    }
                },
                Event::LeaseWanted {
                    key,
                    resource,
                    resumed,
                } => {
                    // It holds its local slot while it waits; the core decides how long.
                    if !resumed {
                        left_waiting += 1;
                    }
                    self.shared.want(key, resource);
                }
                Event::Skipped {
                    key,
                    payload,
                    resource,
                    reason,
                } => {
                    // Skipped while it waited for a global lease: it had left the queue.
                    let waited_for_lease = self.shared.release(key);
                    self.metrics.skipped(&resource, &reason);
                    if let SkipReason::NoSlot = reason {
                        // Before the outcome goes out, so its caller reads this state.
                        if let Some(state) = self.core.breaker_state(&resource) {
                            self.refusal_breakers.refused(&resource, state);
                        }
                    }
                    if let Payload::Fresh(task) = payload {
                        if !waited_for_lease {
                            left_waiting += 1;
                        }
                        task.body.resolve(Outcome::Skipped(reason));
                    }
                }
                Event::QuotaWanted {
                    key,
                    tenant,
                    estimate,
                } => {
                    self.quota_wants.push((key, tenant, estimate));
                }
                Event::QuotaSettled {
                    key,
                    tenant,
                    estimate,
                    actual,
                } => self.quota_settles.push((key, tenant, estimate, actual)),
                Event::LeaseExpired { key } => {
                    // A parent that was waiting for its global lease gives the request up.
                    self.shared.release(key);
                    if let Some(stop) = self.stop_of(key) {
                        stop.request(StopReason::TimedOut);
                    }
                }
            }
        }
        self.events = events;
        if let Some(store) = &self.quota_store {
            // Settlements first: a check sent in the same pass then sees the real costs.
            store.settle(std::mem::take(&mut self.quota_settles));
            store.want(std::mem::take(&mut self.quota_wants));
        }
        self.workers.flush();
        self.link.left_waiting(left_waiting);
        if self.metrics.due(now) {
            self.publish_metrics(now);
        }
        self.schedule_wake(now, ctx);
    }

    /// Publishes the snapshot-derived metrics; returns the snapshot.
    fn publish_metrics(&mut self, now: Duration) -> StatsSnapshot {
        let snap = self.core.snapshot(now);
        let mut backends = self.shared.snapshot();
        if let Some(store) = &self.quota_store {
            backends.insert("quotas".into(), store.snapshot());
        }
        let quotas = QuotaCounts {
            admissions: self.core.quota_admissions(),
            cost_charged: self.core.quota_cost_charged(),
        };
        self.metrics.publish(&snap, self.core.config(), quotas, &backends);
        for (index, threads) in self.placements.on_threads(now) {
            if let Some(resource) = self.core.resource_at(index) {
                self.metrics.bodies_on_threads(resource, threads);
            }
        }
        snap
    }

    fn schedule_wake(&mut self, now: Duration, ctx: &mut Context<Self>) {
        if let Some(at) = self.core.next_deadline() {
            self.wake.arm(at, now, ctx, |act| &mut act.wake, Self::drive);
        }
    }

    fn stop_of(&self, key: JobKey) -> Option<&Arc<Stop>> {
        match self.running.get(key.index()) {
            Some(Some((k, stop))) if *k == key => Some(stop),
            _ => None,
        }
    }

    fn start(&mut self, key: JobKey, task: Task, fencing_token: Option<u64>, now: Duration) {
        let i = key.index();
        if self.running.len() <= i {
            self.running.resize_with(i + 1, || None);
        }
        self.running[i] = Some((key, task.stop.clone()));
        // Live: it was granted a slot this pass (or holds one while it waited for a lease),
        // so the core knows its resource (after a fallback, not the one it was submitted
        // to) and its tenant.
        let resource = self.core.resource_of(key).cloned().unwrap_or_default();
        let tenant = self.core.tenant_of(key).cloned().unwrap_or_default();
        let ctx = JobContext::new(key, tenant, resource, task.stop.clone(), self.link.clone())
            .with_budget(task.budget)
            .with_fencing_token(fencing_token);
        let run = Run {
            body: task.body,
            ctx,
            stop: task.stop,
            slot: SlotReturn::new(key, self.link.clone()),
        };
        if crate::failpoints::hit("weir::dispatch") {
            // Lost in transit: dropping the job reports it `Failed` and returns its slot.
            tracing::warn!(
                job = key.id().0,
                "failpoint weir::dispatch: job dropped before it ran"
            );
            drop(run);
            return;
        }
        let core = &self.core;
        let bodies = || {
            core.resource_of(key)
                .and_then(|r| core.config().resources.get(r.as_str()))
                .map_or_else(Default::default, |r| r.bodies)
        };
        let place = self
            .placements
            .place(key, now, || core.resource_index_of(key), bodies);
        self.workers.dispatch(run, place);
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // Stopped without a shutdown (its system ended): what is still pending is dropped,
        // so those jobs' handles resolve instead of waiting for a drain that never comes.
        drop(self.link.inbox().close());
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.placements.times_polls() {
            // Bodies placed inline run on this thread, under this limit.
            crate::poll_timer::time_polls_here(self.core.config().runtime.inline_poll_limit);
        }
        let me = ctx.address();
        self.shared = SharedSlots::start(self.core.config(), move |answers| {
            me.do_send(BackendAnswers(answers));
        });
        // Jobs of a resource whose broker started wait for a global lease; the core
        // decides every stage of that wait.
        let me = ctx.address();
        self.quota_store = SharedQuotaStore::start(self.core.config(), move |answers| {
            me.do_send(QuotaAnswers(answers));
        });
        if self.quota_store.is_some() {
            self.core.require_shared_quotas();
        }
        let shared: Vec<ResourceId> = self.shared.resources().cloned().collect();
        for resource in &shared {
            self.core.require_global_lease(resource);
        }
    }
}

impl Handler<Drain> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: Drain, ctx: &mut Context<Self>) {
        self.drain_inbox(ctx);
        self.drive(ctx);
        self.finish_shutdown_if_idle(ctx);
    }
}
