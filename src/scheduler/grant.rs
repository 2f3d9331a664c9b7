//! The grant loop: which waiting job gets a free slot (the fair queue's pick), and the
//! `Granted` event it produces.

use std::time::Duration;

use crate::breaker::Permit;
use crate::job::OnWaitTimeout;

use super::entry::{Queued, Stage};
use super::{Event, JobKey, Scheduler};

impl<T> Scheduler<T> {
    /// Puts a deferred or parked job into its tenant's queue.
    pub(super) fn enqueue(&mut self, key: JobKey, now: Duration) {
        let entry = &mut self.jobs[key.idx as usize];
        // A parked parent comes back as `Resuming`: no wait timeout, a live task.
        let resuming = matches!(entry.stage, Stage::Parked);
        entry.stage = if resuming {
            Stage::Resuming { since: now }
        } else {
            Stage::Waiting { since: now }
        };
        entry.epoch = entry.epoch.wrapping_add(1);
        let r = entry.resource;
        let weight = self.config.weight(entry.tenant.as_str());
        let (tenant, cost, wait, epoch) = (entry.tenant.clone(), entry.cost, entry.wait_timeout, entry.epoch);
        let res = &mut self.resources[r as usize];
        res.tenants.enqueued(&tenant, weight);
        // The entry keeps the queue's copy of its tenant's name, so the name the caller
        // allocated for this job is freed here (one name per tenant, not per job).
        let shared = res
            .queue
            .push(tenant, weight, cost, Queued::new(key, epoch))
            .clone();
        res.queued += 1;
        self.jobs[key.idx as usize].tenant = shared;
        if let (Some(wait), false) = (wait, resuming) {
            self.timers.push_wait(now, wait, key);
        }
        self.mark_dirty(r);
    }

    pub(super) fn grant(&mut self, now: Duration, out: &mut Vec<Event<T>>) {
        while let Some(r) = self.dirty.pop() {
            self.resources[r as usize].dirty = false;
            if self.resources[r as usize].guard.is_some() {
                self.grant_guarded(r, now, out);
                continue;
            }
            while self.resources[r as usize].pool.has_free() {
                if !self.grant_next(r, None, now, out) {
                    break;
                }
            }
        }
    }

    /// Grants the next waiting job of resource `r` (a free slot was checked); false when
    /// none is waiting.
    pub(super) fn grant_next(
        &mut self,
        r: u32,
        permit: Option<Permit>,
        now: Duration,
        out: &mut Vec<Event<T>>,
    ) -> bool {
        let res = &mut self.resources[r as usize];
        let jobs = &self.jobs;
        let next = res.queue.pop_live(|queued| queued.is_live(jobs));
        let Some((_, queued)) = next else { return false };
        let key = queued.key();
        res.queued -= 1;
        let granted = res.pool.try_grant();
        debug_assert!(granted, "has_free was checked");
        let entry = &mut self.jobs[key.idx as usize];
        let (Stage::Waiting { since } | Stage::Resuming { since }) = entry.stage else {
            unreachable!("pop_live returns waiting jobs only")
        };
        let waited = now.saturating_sub(since);
        res.stats.record_wait(waited);
        res.tenants.granted(&entry.tenant, entry.cost, waited);
        let resumed = matches!(entry.stage, Stage::Resuming { .. });
        entry.stage = Stage::Running { granted_at: now };
        entry.permit = permit;
        entry.attempts = entry.attempts.saturating_add(1);
        entry.grant = res.pool.granted_total();
        let wait_left = match entry.on_wait_timeout {
            OnWaitTimeout::Requeue => None,
            OnWaitTimeout::Skip => entry.wait_timeout.map(|w| w.saturating_sub(waited)),
        };
        let lease = entry.lease;
        entry.lease_until = now.saturating_add(lease);
        self.timers.push_lease(now, lease, key);
        self.waiting -= 1;
        tracing::trace!(job = key.id.0, resource = %res.name, ?waited, "grant");
        if res.global {
            self.want_global_lease(key, since, resumed, out);
            return true;
        }
        let payload = entry.payload.take().expect("a waiting job has its payload");
        out.push(Event::Granted {
            key,
            payload,
            lease,
            waited,
            wait_left,
        });
        true
    }

    /// The local slot is held while the job waits for its global lease; the core keeps
    /// the payload until the lease comes (or the wait ends). Out of line, so the grant of
    /// a plain resource (the hot path) stays as small as before the stage existed.
    #[cold]
    #[inline(never)]
    fn want_global_lease(&mut self, key: JobKey, since: Duration, resumed: bool, out: &mut Vec<Event<T>>) {
        let entry = &mut self.jobs[key.idx as usize];
        entry.stage = Stage::LeaseWait { since, resumed };
        let resource = self.resources[entry.resource as usize].name.clone();
        out.push(Event::LeaseWanted {
            key,
            resource,
            resumed,
        });
    }
}
