//! Inputs that move a job between stages after it was granted, or end it: expiries
//! (wait timeout, lease), complete, renew, retry, park, unpark and cancel.

use std::time::Duration;

use crate::job::{OnWaitTimeout, OutcomeKind, SkipReason};

use super::entry::Stage;
use super::{Cancelled, CoreError, Event, JobKey, Scheduler};

impl<T> Scheduler<T> {
    pub(super) fn expire_wait(&mut self, key: JobKey, now: Duration, out: &mut Vec<Event<T>>) {
        let Some(entry) = Self::live_mut(&mut self.jobs, key) else {
            return;
        };
        let (since, for_lease) = match entry.stage {
            Stage::Waiting { since } => (since, false),
            // The wait deadline set in the queue bounds the wait for a global lease too,
            // except for a job that asked to be requeued (it is never skipped there).
            Stage::LeaseWait {
                since,
                resumed: false,
                ..
            } if entry.on_wait_timeout == OnWaitTimeout::Skip => (since, true),
            _ => return,
        };
        let Some(wait) = entry.wait_timeout else { return };
        if now.saturating_sub(since) < wait {
            return; // requeued since this deadline was set
        }
        if for_lease {
            let (tenant, r) = (entry.tenant.clone(), entry.resource as usize);
            let payload = self.end_lease_wait(key, OutcomeKind::Skipped, now);
            let resource = &self.resources[r].name;
            tracing::info!(job = key.id.0, %tenant, %resource, "skip: no global lease within the wait timeout");
            out.push(Event::Skipped {
                key,
                payload,
                resource: resource.clone(),
                reason: SkipReason::NoSlot,
            });
            return;
        }
        if since == now && entry.on_wait_timeout == OnWaitTimeout::Requeue {
            // A zero wait timeout with Requeue: requeueing would set a deadline due at this
            // same instant and `poll` would never return (found by the fairness suite,
            // issue 4). Rejoining the back of the queue it just joined changes nothing, so
            // the job keeps its place and waits until granted.
            return;
        }
        let r = entry.resource as usize;
        self.resources[r].queued -= 1;
        self.resources[r].tenants.unqueued(&entry.tenant);
        if entry.on_wait_timeout == OnWaitTimeout::Requeue {
            // The old queue position goes stale (its epoch no longer matches); the job
            // rejoins at the back of its tenant's queue with a fresh wait timeout.
            self.enqueue(key, now);
            return;
        }
        let entry = self.jobs.remove(key.idx as usize);
        self.waiting -= 1;
        self.settle_quota(key, &entry.tenant, entry.quota, false, now);
        let res = &mut self.resources[r];
        res.stats.record_outcome(OutcomeKind::Skipped);
        tracing::info!(job = key.id.0, tenant = %entry.tenant, resource = %res.name, "skip: no slot within the wait timeout");
        out.push(Event::Skipped {
            key,
            payload: entry.payload.expect("a waiting job has its payload"),
            resource: res.name.clone(),
            reason: SkipReason::NoSlot,
        });
    }

    pub(super) fn expire_lease(&mut self, key: JobKey, now: Duration, out: &mut Vec<Event<T>>) {
        let Some(entry) = Self::live_mut(&mut self.jobs, key) else {
            return;
        };
        let (granted_at, lease_wait) = match entry.stage {
            Stage::Running { granted_at } => (granted_at, None),
            Stage::LeaseWait { resumed, .. } => (entry.granted_at(), Some(resumed)),
            _ => return,
        };
        if now < entry.lease_until {
            // A stale deadline: the lease was renewed, or the job was parked and granted
            // again with a fresh lease, since this one was set.
            return;
        }
        if lease_wait == Some(false) {
            // It never started: its lease ran out while it waited for a global one.
            let (tenant, r) = (entry.tenant.clone(), entry.resource as usize);
            let payload = self.end_lease_wait(key, OutcomeKind::Skipped, now);
            let resource = &self.resources[r].name;
            tracing::info!(job = key.id.0, %tenant, %resource, "skip: no global lease within the lease");
            out.push(Event::Skipped {
                key,
                payload,
                resource: resource.clone(),
                reason: SkipReason::NoSlot,
            });
            return;
        }
        if lease_wait == Some(true) {
            // A resuming parent: dropping its waker tells its task no slot will come; the
            // shell stops the task as for any expired lease.
            entry.payload = None;
        }
        entry.stage = Stage::Overdue { granted_at };
        let res = &mut self.resources[entry.resource as usize];
        res.overdue += 1;
        tracing::info!(job = key.id.0, tenant = %entry.tenant, resource = %res.name, "timeout: lease expired, cancelling");
        out.push(Event::LeaseExpired { key });
    }

    /// The job stopped (ran to an end, failed, was cancelled or timed out): its slot
    /// returns and its outcome is counted.
    pub fn complete(&mut self, key: JobKey, outcome: OutcomeKind, now: Duration) -> Result<(), CoreError> {
        let entry = self.live(key).ok_or(CoreError::UnknownJob)?;
        let (granted_at, overdue) = match entry.stage {
            Stage::Running { granted_at } => (Some(granted_at), false),
            Stage::LeaseWait { .. } => (Some(entry.granted_at()), false),
            Stage::Overdue { granted_at } => (Some(granted_at), true),
            Stage::Parked => (None, false),
            // A parent that resumed (unparked) and stopped before its slot came back.
            Stage::Resuming { .. } => (None, false),
            _ => return Err(CoreError::WrongStage("running or parked")),
        };
        let was_waiting = matches!(entry.stage, Stage::Resuming { .. });
        if was_waiting {
            let r = entry.resource as usize;
            self.waiting -= 1;
            self.resources[r].queued -= 1;
        }
        let entry = self.jobs.remove(key.idx as usize);
        if was_waiting {
            self.resources[entry.resource as usize]
                .tenants
                .unqueued(&entry.tenant);
        }
        self.settle_quota(key, &entry.tenant, entry.quota, true, now);
        let r = entry.resource;
        let res = &mut self.resources[r as usize];
        if let Some(granted_at) = granted_at {
            res.tenants.released(&entry.tenant);
            let in_flight = res.pool.held();
            res.pool.release().expect("a running job holds a slot");
            res.stats.record_run(now.saturating_sub(granted_at));
            res.adapt(outcome, entry.grant, granted_at, in_flight, now);
        }
        if overdue {
            res.overdue -= 1;
        }
        res.stats.record_outcome(outcome);
        if let Some(guard) = &mut res.guard {
            guard.on_outcome(entry.permit, outcome, now);
        }
        tracing::trace!(job = key.id.0, resource = %res.name, ?outcome, "release");
        self.mark_dirty(r);
        Ok(())
    }

    /// Renews a running job's lease: it now ends at `now + lease` (the job's own lease
    /// length), which this returns. Refused, changing nothing, once the lease has expired
    /// (the job is being stopped and its slot is not given back) or while the job holds
    /// no slot.
    pub fn renew(&mut self, key: JobKey, now: Duration) -> Result<Duration, crate::LeaseError> {
        let entry = Self::live_mut(&mut self.jobs, key).ok_or(crate::LeaseError::Ended)?;
        match entry.stage {
            Stage::Running { .. } if now < entry.lease_until => {}
            // Due but not yet polled: the lease is over even if the event is not out yet.
            Stage::Running { .. } | Stage::Overdue { .. } => return Err(crate::LeaseError::Expired),
            Stage::Parked
            | Stage::Resuming { .. }
            | Stage::LeaseWait { .. }
            | Stage::Waiting { .. }
            | Stage::Deferred
            | Stage::QuotaWait => return Err(crate::LeaseError::NotHeld),
        }
        entry.lease_until = now.saturating_add(entry.lease);
        let (lease, until) = (entry.lease, entry.lease_until);
        self.timers.push_lease(now, lease, key);
        Ok(until)
    }

    /// A running job's attempt failed and the shell can run it again: if its resource's
    /// retry policy has an attempt left, the failure is recorded in the breaker, the slot
    /// returns, and the job goes back to `Deferred` until its backoff ends (it holds no
    /// slot while it sleeps, and its wait timeout counts afresh from the release). If
    /// the breaker is open after this failure, the job moves to the fallback at once
    /// when one is usable, and otherwise is not retried.
    ///
    /// Returns the release instant, or gives `payload` back when the job will not run
    /// again: the shell then reports its final outcome with [`Scheduler::complete`].
    /// `retry_after` is the downstream's Retry-After from the failed attempt, if any.
    pub fn retry(
        &mut self,
        key: JobKey,
        payload: T,
        retry_after: Option<Duration>,
        now: Duration,
    ) -> Result<Duration, T> {
        let Some(entry) = Self::live_mut(&mut self.jobs, key) else {
            return Err(payload);
        };
        let (granted_at, overdue) = match entry.stage {
            Stage::Running { granted_at } => (granted_at, false),
            Stage::Overdue { granted_at } => (granted_at, true),
            _ => return Err(payload),
        };
        let r = entry.resource;
        let attempts = entry.attempts;
        let Some(guard) = self.resources[r as usize].guard.as_mut() else {
            return Err(payload);
        };
        let Some(delay) = guard.retry_delay(attempts, retry_after) else {
            return Err(payload);
        };
        // The failure counts now; `complete` will find no permit and not count it twice.
        guard.on_outcome(entry.permit.take(), OutcomeKind::Failed, now);
        let (target, release_at) = if guard.is_open(now) {
            match self.usable_fallback(r, now) {
                Some(f) => (f, now),
                None => return Err(payload),
            }
        } else {
            // The resource's pause (a Retry-After another call was given) binds this
            // job too: it wakes at its own backoff or the pause's end, whichever is later.
            let paused = guard.paused_until(now).unwrap_or(now);
            (r, (now + delay).max(paused))
        };
        let entry = &mut self.jobs[key.idx as usize];
        entry.stage = Stage::Deferred;
        // The shell returns its global lease with the slot; the next attempt takes another.
        entry.global_lease = false;
        entry.payload = Some(payload);
        entry.resource = target;
        self.waiting += 1;
        let res = &mut self.resources[r as usize];
        res.tenants.released(&entry.tenant);
        res.pool.release().expect("a running job holds a slot");
        res.stats.record_run(now.saturating_sub(granted_at));
        if overdue {
            res.overdue -= 1;
        }
        let guard = res.guard.as_mut().expect("checked above");
        guard.stats.retries += 1;
        if target != r {
            guard.stats.fallbacks += 1;
        }
        tracing::debug!(job = key.id.0, resource = %res.name, attempts, ?release_at, "retry");
        self.mark_dirty(r);
        if release_at <= now {
            self.enqueue(key, now);
            if target != r {
                self.lend(r, key);
            }
        } else {
            self.resources[target as usize].deferred += 1;
            self.timers.push_release(release_at, key);
        }
        Ok(release_at)
    }

    /// A running parent gives its slot up while it waits for its children.
    pub fn park(&mut self, key: JobKey, now: Duration) -> Result<(), CoreError> {
        let entry = Self::live_mut(&mut self.jobs, key).ok_or(CoreError::UnknownJob)?;
        let Stage::Running { granted_at } = entry.stage else {
            return Err(CoreError::WrongStage("running"));
        };
        entry.stage = Stage::Parked;
        // The shell returns its global lease with the slot; resuming takes another.
        entry.global_lease = false;
        let r = entry.resource;
        let permit = entry.permit.take();
        let res = &mut self.resources[r as usize];
        res.tenants.released(&entry.tenant);
        if let Some(guard) = &mut res.guard {
            guard.forget(permit);
        }
        res.pool.release().expect("a running job holds a slot");
        res.stats.record_run(now.saturating_sub(granted_at));
        self.mark_dirty(r);
        Ok(())
    }

    /// A parked parent asks for a slot again; it waits with no wait timeout (it already
    /// did work that a skip would waste) and is granted with a fresh lease. `payload` is
    /// what [`Event::Granted`] hands back (the shell's waker).
    pub fn unpark(&mut self, key: JobKey, payload: T, now: Duration) -> Result<(), CoreError> {
        let entry = Self::live_mut(&mut self.jobs, key).ok_or(CoreError::UnknownJob)?;
        if !matches!(entry.stage, Stage::Parked) {
            return Err(CoreError::WrongStage("parked"));
        }
        entry.payload = Some(payload);
        // `enqueue` makes it `Resuming` (no wait timeout). Clearing its own timeout as
        // well keeps any later attempt of this parent (a retry) unskippable, as before.
        entry.wait_timeout = None;
        self.waiting += 1;
        self.enqueue(key, now);
        Ok(())
    }

    /// Cancels a job: removed at once if it has not started, else the shell must stop it.
    /// A job waiting for a global lease holds a local slot, and returning a slot takes a
    /// `now`: `cancel` reports it `Running` (and [`Scheduler::complete`] then ends it,
    /// dropping its payload); [`Scheduler::cancel_at`] ends it at once and returns its
    /// payload.
    pub fn cancel(&mut self, key: JobKey) -> Cancelled<T> {
        let Some(entry) = self.live(key) else {
            return Cancelled::Unknown;
        };
        match entry.stage {
            // A resumed parent has a running task: the shell stops it and completes it.
            Stage::Resuming { .. } => Cancelled::Running,
            Stage::Deferred | Stage::Waiting { .. } | Stage::QuotaWait => {
                let entry = self.jobs.remove(key.idx as usize);
                self.waiting -= 1;
                if entry.quota.admitted {
                    self.quotas.release(&entry.tenant, entry.quota.estimate);
                    if let Some(shared) = &mut self.shared_quotas {
                        shared.fallback_mut().release(&entry.tenant, entry.quota.estimate);
                    }
                }
                let res = &mut self.resources[entry.resource as usize];
                if matches!(entry.stage, Stage::Deferred) {
                    res.deferred -= 1;
                } else if matches!(entry.stage, Stage::QuotaWait) {
                    // In no queue and not deferred: only `waiting` counted it.
                } else {
                    res.queued -= 1;
                    res.tenants.unqueued(&entry.tenant);
                }
                res.stats.record_outcome(OutcomeKind::Cancelled);
                Cancelled::Removed(entry.payload.expect("a waiting job has its payload"))
            }
            _ => Cancelled::Running,
        }
    }

    /// Cancels every job that has not started (shutdown); returns their payloads.
    pub fn cancel_waiting(&mut self) -> Vec<(JobKey, T)> {
        let keys: Vec<JobKey> = self
            .jobs
            .iter()
            .filter(|(_, e)| {
                matches!(
                    e.stage,
                    Stage::Deferred | Stage::Waiting { .. } | Stage::QuotaWait
                )
            })
            .map(|(idx, e)| JobKey {
                idx: idx as u32,
                id: e.id,
            })
            .collect();
        keys.into_iter()
            .filter_map(|k| match self.cancel(k) {
                Cancelled::Removed(p) => Some((k, p)),
                _ => None,
            })
            .collect()
    }
}
