//! What the supervisor takes in: submissions, and everything a started job sends back
//! through its link (stop report, park, unpark, lease renewal, reported cost), plus
//! cancellations. Each input changes the core; the caller drives the core after.

use std::sync::Arc;
use std::time::Duration;

use actix::{AsyncContext, Context, Handler};
use tokio::sync::oneshot;
use tokio::time::Instant;
use weir::{Cancelled, JobKey, Outcome, OutcomeKind, ResourceId};

use super::{Payload, Supervisor, Task};
use crate::job::budget::CallBudget;
use crate::job::inbox::Intake;
use crate::job::link::{Cancel, Done, Submitted};
use crate::job::retrying::Rearm;
use crate::redis_pool::Ended;

impl Supervisor {
    /// Takes in everything the inbox holds, in the order it was appended. The caller
    /// drives the core after.
    pub(super) fn drain_inbox(&mut self, ctx: &mut Context<Self>) {
        // Slow polls first: a job that polled too long may have ended in that poll, and its
        // resource is known only while it is live.
        let (core, origin) = (&self.core, self.origin);
        self.placements.take_slow(
            || Instant::now().saturating_duration_since(origin),
            |key| core.resource_index_of(key),
        );
        let mut batch = std::mem::take(&mut self.intake);
        self.link.inbox().take(&mut batch);
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
        self.link.left_waiting(refused);
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
            budget: ctx.budget().cloned(),
        };
        // Not while stopping: a cancelled job or a runtime shutting down ends now.
        let payload = if stop.reason().is_some() || self.shutdown.is_some() {
            Payload::Fresh(task)
        } else {
            match self.core.retry(key, Payload::Fresh(task), retry_after, now) {
                Ok(_) => {
                    self.link.entered_waiting(1);
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
                    overload: msg.overload,
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
        self.placements.ended(msg.key);
        // A shared learned rate hears how the call went before its admission goes back.
        self.shared.ended(
            msg.key,
            match (msg.overload, msg.kind) {
                (Some(retry_after), _) => Ended::Overloaded(retry_after),
                (None, OutcomeKind::Completed) => Ended::Completed,
                _ => Ended::Other,
            },
        );
        // Its global lease goes back (or its request for one, if it ended waiting).
        self.shared.release(msg.key);
        if let Some(slot) = self.running.get_mut(msg.key.index()) {
            if matches!(slot, Some((k, _)) if *k == msg.key) {
                *slot = None;
            }
        }
        if let Some(retry_after) = msg.overload {
            // The adaptive limit and rate hear of it before the slot returns (a job that
            // is no longer held, reported twice, is refused and only logged).
            if let Err(e) = self.core.refused(msg.key, retry_after, now) {
                tracing::debug!(job = msg.key.id().0, error = %e, "overload for a job the core does not hold");
            }
        }
        if let Some(rearm) = msg.rearm.take() {
            if self.retry(msg.key, *rearm, now) {
                return;
            }
        }
        // Read before the core forgets the job, without cloning its names (this runs per
        // job). A stale or repeated report names no live job and is not counted.
        if let Some(resource) = self.core.resource_of(msg.key) {
            let ran = self.core.held_since(msg.key).map(|t| now.saturating_sub(t));
            self.metrics
                .ended(resource, self.core.tenant_of(msg.key), ran, msg.kind);
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
            // Its global lease goes back too; resuming, it asks for one again.
            Ok(()) => {
                self.shared.release(key);
            }
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
        let now = self.now();
        match self.core.cancel_at(key, now) {
            Cancelled::Removed(Payload::Fresh(task)) => {
                // One that waited for a global lease had left the queue already.
                if !self.shared.release(key) {
                    self.link.left_waiting(1);
                }
                task.body.resolve(Outcome::Cancelled);
            }
            // A running job (or a parent waiting for its slot or lease) sees its flag and
            // reports Done; an ended one needs nothing.
            Cancelled::Running | Cancelled::Removed(Payload::Resume(_)) | Cancelled::Unknown => {}
        }
    }
}
