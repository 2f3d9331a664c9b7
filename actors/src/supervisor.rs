//! The Supervisor actor: the only place a slot is granted.
//!
//! It owns the scheduler core and carries out its decisions: it hands granted jobs to
//! workers, resolves skipped and cancelled jobs, stops jobs whose lease expired, and
//! schedules one wake-up for the core's next deadline. Nothing else in the process
//! admits work, so the per-resource cap is a property of this one actor's state.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, ActorContext, AsyncContext, Context, Handler, Message, SpawnHandle};
use tokio::sync::oneshot;
use tokio::time::Instant;
use weir::{
    BatchSchedule, Cancelled, Event, JobKey, JobSpec, Outcome, OutcomeKind, ResourceId, Scheduler,
    SkipReason, StatsSnapshot, TenantId, UsageSnapshot,
};

use crate::budget::CallBudget;
use crate::context::JobContext;
use crate::inbox::Intake;
use crate::job::{ErasedBody, SlotReturn};
use crate::redis_pool::{Answer, BackendSnapshot, SharedSlots};
use crate::retrying::Rearm;
use crate::runtime::Runtime;
use crate::stop::{Stop, StopReason};
use crate::worker::{Run, WorkerPool};

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
    /// The resource it was submitted to (the core knows its tenant; not kept twice, since
    /// every waiting job holds a `Task`).
    resource: ResourceId,
    budget: Option<Arc<CallBudget>>,
}

/// What shutdown did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Jobs that had not started and ended `Cancelled`.
    pub cancelled_waiting: u64,
    /// Jobs still running at the deadline, stopped and ended `Cancelled`.
    pub cancelled_running: u64,
    /// Jobs that were running when shutdown began and ended on their own before the deadline.
    pub finished_in_grace: u64,
}

pub(crate) struct Supervisor {
    core: Scheduler<Payload>,
    runtime: Runtime,
    origin: Instant,
    workers: WorkerPool,
    arbiters: Vec<actix_rt::Arbiter>,
    /// Stop signals of started jobs, indexed by `JobKey::index`.
    running: Vec<Option<(JobKey, Arc<Stop>)>>,
    events: Vec<Event<Payload>>,
    wake: Option<(Duration, SpawnHandle)>,
    schedule: BatchSchedule,
    shutdown: Option<ShutdownState>,
    /// Some resource has a `call_budget` (else submissions skip the lookup).
    any_budget: bool,
    /// Resources whose slots are shared through Redis (see `redis_pool::shared`).
    shared: SharedSlots<Payload>,
    /// The inbox's last batch, kept empty between drains for its capacity.
    intake: Vec<Intake>,
}

struct ShutdownState {
    report: ShutdownReport,
    reply: Vec<oneshot::Sender<ShutdownReport>>,
    deadline_passed: bool,
}

impl Supervisor {
    pub(crate) fn new(
        config: weir::Config,
        runtime: Runtime,
        workers: WorkerPool,
        arbiters: Vec<actix_rt::Arbiter>,
    ) -> Self {
        let schedule = BatchSchedule::new(config.scheduler.org_batch_size, config.scheduler.batch_delay);
        let any_budget = config.resources.values().any(|r| r.call_budget.is_some());
        Self {
            any_budget,
            core: Scheduler::new(config),
            runtime,
            origin: Instant::now(),
            workers,
            arbiters,
            running: Vec::new(),
            events: Vec::new(),
            wake: None,
            schedule,
            shutdown: None,
            shared: SharedSlots::none(),
            intake: Vec::new(),
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
                    key,
                    payload,
                    wait_left,
                    ..
                } => match payload {
                    Payload::Fresh(task) => {
                        left_waiting += 1;
                        match self.shared_resource(key, &task) {
                            // Holds its local slot while it waits for a global lease, for
                            // what is left of its own wait timeout.
                            Some(resource) => {
                                self.shared.want(key, resource, Payload::Fresh(task), wait_left)
                            }
                            None => self.start(key, task, None),
                        }
                    }
                    Payload::Resume(tx) => match self.shared.resumed(key) {
                        Some(resource) => self.shared.want(key, resource, Payload::Resume(tx), None),
                        // If the parent stopped meanwhile its task reports Done, which
                        // returns this slot.
                        None => {
                            let _ = tx.send(());
                        }
                    },
                },
                Event::Skipped { payload, reason, .. } => {
                    if let Payload::Fresh(task) = payload {
                        left_waiting += 1;
                        task.body.resolve(Outcome::Skipped(reason));
                    }
                }
                // Global leases are kept in `SharedSlots`; this core is never asked to.
                Event::LeaseWanted { .. } => unreachable!("no resource requires a global lease in the core"),
                Event::LeaseExpired { key } => {
                    if let Some(payload) = self.shared.release(key) {
                        // Never started: it waited for a global lease past its lease.
                        self.end_unstarted(key, payload, Outcome::Skipped(SkipReason::NoSlot), now);
                    } else if let Some(stop) = self.stop_of(key) {
                        stop.request(StopReason::TimedOut);
                    }
                }
            }
        }
        self.events = events;
        self.workers.flush();
        self.runtime.left_waiting(left_waiting);
        self.schedule_wake(now, ctx);
    }

    fn schedule_wake(&mut self, now: Duration, ctx: &mut Context<Self>) {
        let Some(at) = self.core.next_deadline() else {
            return;
        };
        if let Some((scheduled, handle)) = self.wake {
            if scheduled <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let mut delay = at.saturating_sub(now);
        if crate::failpoints::hit("weir::wake::early") {
            delay /= 2;
        }
        if crate::failpoints::hit("weir::wake::late") {
            delay += Duration::from_millis(50);
        }
        let handle = ctx.run_later(delay, |act, ctx| {
            act.wake = None;
            act.drive(ctx);
        });
        self.wake = Some((at, handle));
    }

    fn stop_of(&self, key: JobKey) -> Option<&Arc<Stop>> {
        match self.running.get(key.index()) {
            Some(Some((k, stop))) if *k == key => Some(stop),
            _ => None,
        }
    }

    /// Ends a job that was granted a local slot but never started (it waited for a
    /// global lease): resolves it and returns its slot.
    fn end_unstarted(&mut self, key: JobKey, payload: Payload, outcome: Outcome<()>, now: Duration) {
        // A parked parent's waker: dropping it tells the parent it has no slot; its task
        // is being stopped and reports Done itself.
        let Payload::Fresh(task) = payload else { return };
        let kind = outcome.kind();
        task.body.resolve(outcome);
        if let Err(e) = self.core.complete(key, kind, now) {
            tracing::error!(job = key.id().0, error = %e, "unstarted job unknown to the core");
        }
    }

    /// Carries out the answers of the Redis brokers.
    fn on_backend(&mut self, answers: Vec<Answer>, ctx: &mut Context<Self>) {
        let now = self.now();
        for answer in answers {
            match answer {
                Answer::Leased { key, token } => self.leased(key, Some(token)),
                Answer::Admitted(key) => self.leased(key, None),
                Answer::Skip(key) => {
                    if let Some(payload) = self.shared.skipped(key) {
                        self.end_unstarted(key, payload, Outcome::Skipped(SkipReason::NoSlot), now);
                    }
                }
                Answer::Lost(key) => {
                    if self.shared.lost(key) {
                        if let Some(stop) = self.stop_of(key) {
                            stop.request(StopReason::LeaseLost);
                        }
                    }
                }
            }
        }
        self.drive(ctx);
        self.finish_shutdown_if_idle(ctx);
    }

    fn leased(&mut self, key: JobKey, token: Option<u64>) {
        match self.shared.granted(key) {
            Some(Payload::Fresh(task)) => self.start(key, task, token),
            Some(Payload::Resume(tx)) => {
                let _ = tx.send(());
            }
            None => {}
        }
    }

    /// The resource whose global lease a just-granted job must hold before it starts, if
    /// its slot is shared through Redis. That is the resource the core granted, which
    /// after a fallback is not the one the job was submitted to.
    fn shared_resource(&self, key: JobKey, task: &Task) -> Option<ResourceId> {
        if !self.shared.any() {
            return None;
        }
        let granted = self.core.resource_of(key).unwrap_or(&task.resource);
        self.shared.is_shared(granted).then(|| granted.clone())
    }

    fn start(&mut self, key: JobKey, task: Task, fencing_token: Option<u64>) {
        let i = key.index();
        if self.running.len() <= i {
            self.running.resize_with(i + 1, || None);
        }
        self.running[i] = Some((key, task.stop.clone()));
        // After a fallback the job runs on another resource than it was submitted to.
        let resource = self.core.resource_of(key).cloned().unwrap_or(task.resource);
        // Live: it was granted a slot this pass (or holds one while it waited for a lease).
        let tenant = self.core.tenant_of(key).cloned().unwrap_or_default();
        let ctx = JobContext::new(key, tenant, resource, task.stop.clone(), self.runtime.clone())
            .with_budget(task.budget)
            .with_fencing_token(fencing_token);
        let run = Run {
            body: task.body,
            ctx,
            stop: task.stop,
            slot: SlotReturn::new(key, self.runtime.clone()),
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
        self.workers.dispatch(run);
    }

    /// Takes in everything the inbox holds, in the order it was appended. The caller
    /// drives the core after.
    fn drain_inbox(&mut self, ctx: &mut Context<Self>) {
        let mut batch = std::mem::take(&mut self.intake);
        self.runtime.inbox().take(&mut batch);
        if !batch.is_empty() {
            let now = self.now();
            for item in batch.drain(..) {
                match item {
                    Intake::One(item) => self.submit(std::iter::once(item), false, now),
                    Intake::Many { items, fanout } => self.submit(items, fanout, now),
                    Intake::Done(done) => self.take_done(done, now, ctx),
                    Intake::Park(key) => self.park(key, now),
                    Intake::Unpark(key, tx) => self.unpark(key, tx, now),
                    Intake::Renew(key, tx) => {
                        let _ = tx.send(self.renew(key, now));
                    }
                    Intake::Cost { key, cost } => self.report_cost(key, cost),
                }
            }
        }
        self.intake = batch;
    }

    fn submit(&mut self, items: impl IntoIterator<Item = Submitted>, fanout: bool, now: Duration) {
        let mut refused = 0;
        for (i, item) in items.into_iter().enumerate() {
            let release_at = if fanout {
                now + self.schedule.offset(i)
            } else {
                now
            };
            let budget = item.budget.or_else(|| self.budget_for(&item.spec.resource));
            let task = Task {
                body: item.body,
                stop: item.stop.clone(),
                resource: item.spec.resource.clone(),
                budget,
            };
            let key = self
                .core
                .submit_at(item.spec, Payload::Fresh(task), release_at, now);
            item.stop.set_key(key);
            // Cancelled before the submission reached us, or submitted during shutdown:
            // counted as submitted and cancelled, never run.
            if item.stop.reason().is_some() || self.shutdown.is_some() {
                if let Cancelled::Removed(Payload::Fresh(task)) = self.core.cancel(key) {
                    refused += 1;
                    task.body.resolve(Outcome::Cancelled);
                }
            }
        }
        self.runtime.left_waiting(refused);
    }

    /// A fresh call budget for a job of `resource`, if the resource has one.
    fn budget_for(&self, resource: &ResourceId) -> Option<Arc<CallBudget>> {
        if !self.any_budget {
            return None;
        }
        let cfg = self.core.config().resources.get(resource.as_str())?.call_budget?;
        Some(Arc::new(CallBudget::new(cfg)))
    }

    /// A retrying job's attempt failed: asks the core to run it again. True when it
    /// will (it sleeps its backoff in the core, holding no slot); otherwise its handle
    /// resolves with this failure and the caller completes it.
    fn retry(&mut self, key: JobKey, rearm: Rearm, now: Duration) -> bool {
        let Rearm { body, error, ctx } = rearm;
        let retry_after = match &error {
            weir::JobError::Job { retry_after, .. } => *retry_after,
            _ => None,
        };
        let stop = ctx.stop().clone();
        let task = Task {
            body,
            stop: stop.clone(),
            resource: ctx.resource().clone(),
            budget: ctx.budget().cloned(),
        };
        // Not while stopping: a cancelled job or a runtime shutting down ends now.
        let payload = if stop.reason().is_some() || self.shutdown.is_some() {
            Payload::Fresh(task)
        } else {
            match self.core.retry(key, Payload::Fresh(task), retry_after, now) {
                Ok(_) => {
                    self.runtime.entered_waiting(1);
                    return true;
                }
                Err(payload) => payload,
            }
        };
        if let Payload::Fresh(task) = payload {
            task.body.resolve(Outcome::Failed(error));
        }
        false
    }

    fn finish_shutdown_if_idle(&mut self, ctx: &mut Context<Self>) {
        if self.shutdown.is_none() {
            return;
        }
        self.drain_inbox(ctx);
        let Some(state) = &mut self.shutdown else { return };
        if self.core.live_jobs() > 0 {
            return;
        }
        // Submissions that raced the close: refused like any submission during shutdown.
        // Nothing else can be pending: every job has ended.
        let mut refused = 0;
        for item in self.runtime.inbox().close() {
            let items = match item {
                Intake::One(item) => vec![item],
                Intake::Many { items, .. } => items,
                _ => Vec::new(),
            };
            for item in items {
                refused += 1;
                item.body.resolve(Outcome::Cancelled);
            }
        }
        self.runtime.left_waiting(refused);
        for tx in state.reply.drain(..) {
            let _ = tx.send(state.report);
        }
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
        let now = Instant::now().saturating_duration_since(self.origin);
        self.runtime.on_stopped(self.core.snapshot(now));
        ctx.stop();
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // Stopped without a shutdown (its system ended): what is still pending is dropped,
        // so those jobs' handles resolve instead of waiting for a drain that never comes.
        drop(self.runtime.inbox().close());
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let me = ctx.address();
        self.shared = SharedSlots::start(self.core.config(), move |answers| {
            me.do_send(BackendAnswers(answers));
        });
    }
}

/// Answers of the Redis brokers (leases granted, skipped, lost).
pub(crate) struct BackendAnswers(pub(crate) Vec<Answer>);

impl Message for BackendAnswers {
    type Result = ();
}

impl Handler<BackendAnswers> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: BackendAnswers, ctx: &mut Context<Self>) {
        self.on_backend(msg.0, ctx);
    }
}

/// Asks for the slot backends' statistics.
pub(crate) struct GetBackendStats;

impl Message for GetBackendStats {
    type Result = std::collections::BTreeMap<String, BackendSnapshot>;
}

impl Handler<GetBackendStats> for Supervisor {
    type Result = actix::MessageResult<GetBackendStats>;

    fn handle(&mut self, _: GetBackendStats, ctx: &mut Context<Self>) -> Self::Result {
        self.drain_inbox(ctx);
        self.drive(ctx);
        actix::MessageResult(self.shared.snapshot())
    }
}

pub(crate) struct Submitted {
    pub(crate) spec: JobSpec,
    pub(crate) body: Box<dyn ErasedBody>,
    pub(crate) stop: Arc<Stop>,
    pub(crate) budget: Option<Arc<CallBudget>>,
}

impl From<crate::Job> for Submitted {
    fn from(job: crate::Job) -> Self {
        Self {
            spec: job.spec,
            body: job.body,
            stop: job.stop,
            budget: job.budget,
        }
    }
}

/// The inbox has new items (see [`crate::inbox`]).
pub(crate) struct Drain;

impl Message for Drain {
    type Result = ();
}

impl Handler<Drain> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: Drain, ctx: &mut Context<Self>) {
        self.drain_inbox(ctx);
        self.drive(ctx);
        self.finish_shutdown_if_idle(ctx);
    }
}

/// A started job stopped: its slot comes back. A retrying job's failed attempt comes
/// with its re-armed body (`rearm`), which may run again; boxed, because retries are
/// rare and a `Done` travels with every job (in its task's future, through the inbox).
pub(crate) struct Done {
    pub(crate) key: JobKey,
    pub(crate) kind: OutcomeKind,
    pub(crate) rearm: Option<Box<Rearm>>,
}

impl Supervisor {
    /// A stop report taken from the inbox (the failpoints break this step).
    fn take_done(&mut self, msg: Done, now: Duration, ctx: &mut Context<Self>) {
        if crate::failpoints::hit("weir::done::delay") {
            ctx.run_later(Duration::from_millis(50), move |act, ctx| {
                let now = act.now();
                act.done(msg, now);
                act.drive(ctx);
                act.finish_shutdown_if_idle(ctx);
            });
            return;
        }
        if crate::failpoints::hit("weir::done::duplicate") {
            self.done(
                Done {
                    key: msg.key,
                    kind: msg.kind,
                    rearm: None,
                },
                now,
            );
        }
        self.done(msg, now);
    }

    /// A started job stopped: returns its slot (once: a second report for the same key
    /// is refused by the core and only logged). The caller drives the core after.
    fn done(&mut self, mut msg: Done, now: Duration) {
        // Its global lease goes back (a parent that ended while waiting for one drops
        // its waker here).
        drop(self.shared.release(msg.key));
        if let Some(slot) = self.running.get_mut(msg.key.index()) {
            if matches!(slot, Some((k, _)) if *k == msg.key) {
                *slot = None;
            }
        }
        if let Some(rearm) = msg.rearm.take() {
            if self.retry(msg.key, *rearm, now) {
                return;
            }
        }
        match self.core.complete(msg.key, msg.kind, now) {
            Ok(()) => {
                if let Some(state) = &mut self.shutdown {
                    if state.deadline_passed {
                        state.report.cancelled_running += 1;
                    } else {
                        state.report.finished_in_grace += 1;
                    }
                }
            }
            Err(e) => {
                tracing::error!(job = msg.key.id().0, error = %e, "done for a job the core does not hold")
            }
        }
    }

    /// A parent gives its slot up while it waits for children.
    fn park(&mut self, key: JobKey, now: Duration) {
        match self.core.park(key, now) {
            Ok(()) => self.shared.park(key),
            // Its lease expired meanwhile: it is being stopped and will report Done.
            Err(e) => tracing::debug!(job = key.id().0, error = %e, "park refused"),
        }
    }

    /// A parked parent asks for its slot back; `tx` fires when it is granted.
    fn unpark(&mut self, key: JobKey, tx: oneshot::Sender<()>, now: Duration) {
        if let Err(e) = self.core.unpark(key, Payload::Resume(tx), now) {
            // Dropping the sender tells the parent it has no slot; it is being stopped.
            tracing::debug!(job = key.id().0, error = %e, "unpark refused");
        }
    }

    /// A running job reports its actual cost (charged against cost budgets when it ends).
    fn report_cost(&mut self, key: JobKey, cost: u64) {
        if let Err(e) = self.core.report_cost(key, cost) {
            tracing::debug!(job = key.id().0, error = %e, "cost reported for a job the core does not hold");
        }
    }

    /// A running job renews its lease: the new lease end (time since start).
    fn renew(&mut self, key: JobKey, now: Duration) -> Result<Duration, weir::LeaseError> {
        let renewed = self.core.renew(key, now);
        if let Err(e) = renewed {
            tracing::debug!(job = key.id().0, error = %e, "lease renewal refused");
        }
        renewed
    }
}

/// The caller cancelled a job (its stop flag is already set).
pub(crate) struct Cancel(pub(crate) Arc<Stop>);

impl Message for Cancel {
    type Result = ();
}

impl Handler<Cancel> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Cancel, ctx: &mut Context<Self>) {
        self.drain_inbox(ctx);
        // No key: the job was never submitted; if it is, `submit` sees the flag.
        if let Some(key) = msg.0.key() {
            self.cancel(key);
        }
        self.drive(ctx);
        self.finish_shutdown_if_idle(ctx);
    }
}

impl Supervisor {
    /// Cancels `key` (its stop flag is set): a waiting job ends now, a running one stops
    /// and reports Done.
    fn cancel(&mut self, key: JobKey) {
        match self.core.cancel(key) {
            Cancelled::Removed(Payload::Fresh(task)) => {
                self.runtime.left_waiting(1);
                task.body.resolve(Outcome::Cancelled);
            }
            Cancelled::Running => {
                // Granted locally but still waiting for a global lease: it never started.
                if let Some(payload) = self.shared.release(key) {
                    let now = self.now();
                    self.end_unstarted(key, payload, Outcome::Cancelled, now);
                }
                // A running job sees its flag and reports Done.
            }
            // An ended one needs nothing.
            Cancelled::Removed(Payload::Resume(_)) | Cancelled::Unknown => {}
        }
    }
}

/// Asks for a tenant's quota usage.
pub(crate) struct GetUsage(pub(crate) TenantId);

impl Message for GetUsage {
    type Result = UsageSnapshot;
}

impl Handler<GetUsage> for Supervisor {
    type Result = actix::MessageResult<GetUsage>;

    fn handle(&mut self, msg: GetUsage, ctx: &mut Context<Self>) -> Self::Result {
        self.drain_inbox(ctx);
        self.drive(ctx);
        actix::MessageResult(self.core.usage(&msg.0, self.now()))
    }
}

/// Asks for a statistics snapshot.
pub(crate) struct GetStats;

impl Message for GetStats {
    type Result = StatsSnapshot;
}

impl Handler<GetStats> for Supervisor {
    type Result = actix::MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, ctx: &mut Context<Self>) -> Self::Result {
        self.drain_inbox(ctx);
        self.drive(ctx);
        actix::MessageResult(self.core.snapshot(self.now()))
    }
}

/// Stop intake, cancel what waits, give running jobs until `grace`, then stop them.
pub(crate) struct Shutdown {
    pub(crate) grace: Duration,
    pub(crate) reply: oneshot::Sender<ShutdownReport>,
}

impl Message for Shutdown {
    type Result = ();
}

impl Handler<Shutdown> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Shutdown, ctx: &mut Context<Self>) {
        self.drain_inbox(ctx);
        self.drive(ctx);
        if let Some(state) = &mut self.shutdown {
            state.reply.push(msg.reply);
            self.finish_shutdown_if_idle(ctx);
            return;
        }
        let waiting = self.core.cancel_waiting();
        let mut report = ShutdownReport::default();
        for (_, payload) in waiting {
            if let Payload::Fresh(task) = payload {
                report.cancelled_waiting += 1;
                task.body.resolve(Outcome::Cancelled);
            }
        }
        self.runtime.left_waiting(report.cancelled_waiting);
        let now = self.now();
        for (key, payload) in self.shared.drain_pending() {
            if matches!(payload, Payload::Fresh(_)) {
                report.cancelled_waiting += 1;
            }
            self.end_unstarted(key, payload, Outcome::Cancelled, now);
        }
        self.shutdown = Some(ShutdownState {
            report,
            reply: vec![msg.reply],
            deadline_passed: false,
        });
        ctx.run_later(msg.grace, |act, ctx| {
            if let Some(state) = &mut act.shutdown {
                state.deadline_passed = true;
            }
            for key in act.core.started() {
                if let Some(stop) = act.stop_of(key) {
                    stop.request(StopReason::Cancelled);
                }
            }
            act.finish_shutdown_if_idle(ctx);
        });
        self.finish_shutdown_if_idle(ctx);
    }
}
