//! Routing: moving the jobs waiting on a resource whose breaker is open to its fallback,
//! and taking them back one by one while its breaker is closed and it has room.

use std::cmp::Reverse;
use std::time::Duration;

use slab::Slab;

use super::entry::{Entry, Queued, Stage};
use super::{JobKey, Scheduler};
use crate::job::JobId;

impl<T> Scheduler<T> {
    /// The usable fallback of `r` at `now`: configured, and its own breaker not open.
    pub(super) fn usable_fallback(&mut self, r: u32, now: Duration) -> Option<u32> {
        let f = self.resources[r as usize].guard.as_ref()?.fallback?;
        let open = self.resources[f as usize]
            .guard
            .as_mut()
            .is_some_and(|g| g.is_open(now));
        (!open).then_some(f)
    }

    /// Moves every job waiting on `r` to its fallback (resumed parents stay: they hold
    /// work on `r` already). False when there is no usable fallback.
    pub(super) fn route_to_fallback(&mut self, r: u32, now: Duration) -> bool {
        let Some(f) = self.usable_fallback(r, now) else {
            return false;
        };
        let mut moved = Vec::new();
        let res = &mut self.resources[r as usize];
        let jobs = &self.jobs;
        while let Some((_, queued)) = res.queue.pop_live(|queued| queued.is_live(jobs)) {
            res.queued -= 1;
            moved.push(queued.key());
        }
        for key in moved {
            let entry = &mut self.jobs[key.idx as usize];
            if matches!(entry.stage, Stage::Resuming { .. }) {
                // A resumed parent keeps its place on `r` (without marking `r` dirty,
                // which would route again at once): it waits for the breaker.
                entry.epoch = entry.epoch.wrapping_add(1);
                let weight = self.config.weight(entry.tenant.as_str());
                let res = &mut self.resources[r as usize];
                res.queue.push(
                    entry.tenant.clone(),
                    weight,
                    entry.cost,
                    Queued::new(key, entry.epoch),
                );
                res.queued += 1;
                continue;
            }
            entry.resource = f;
            let res = &mut self.resources[r as usize];
            res.guard.as_mut().expect("guarded").stats.fallbacks += 1;
            tracing::debug!(job = key.id.0, from = %res.name, "fallback");
            self.enqueue(key, now);
            self.lend(r, key);
        }
        true
    }

    /// Remembers that `key`, submitted to `r`, now waits on `r`'s fallback. The heap is
    /// compacted when it holds mostly jobs that no longer wait there, so a resource that
    /// is never idle does not keep an entry per fallback forever.
    pub(super) fn lend(&mut self, r: u32, key: JobKey) {
        let f = self.jobs[key.idx as usize].resource;
        let limit = 2 * self.resources[f as usize].queued as usize + 64;
        self.resources[r as usize].lent.push(Reverse((key.id.0, key.idx)));
        if self.resources[r as usize].lent.len() > limit {
            let jobs = &self.jobs;
            self.resources[r as usize]
                .lent
                .retain(|Reverse((id, idx))| lent_waiting(jobs, *id, *idx, r, f));
        }
    }

    /// The oldest job `r` lent to its fallback that still waits there, dropping the
    /// entries of jobs that started, ended or moved on meanwhile.
    fn oldest_lent(&mut self, r: u32) -> Option<JobKey> {
        let f = self.resources[r as usize].guard.as_ref()?.fallback?;
        while let Some(&Reverse((id, idx))) = self.resources[r as usize].lent.peek() {
            if lent_waiting(&self.jobs, id, idx, r, f) {
                return Some(JobKey { idx, id: JobId(id) });
            }
            self.resources[r as usize].lent.pop();
        }
        None
    }

    /// Work-conserving routing back (issue 17): the job `r` would take back now, if
    /// any: while `r`'s breaker is closed and it has a free slot, the oldest job it lent
    /// to its fallback that still waits there. The fallback keeps serving the rest, so
    /// both drain the backlog (a bulk move back on close left the fallback idle and
    /// made makespans longer).
    pub(super) fn next_to_take_back(&mut self, r: u32, now: Duration) -> Option<JobKey> {
        let res = &mut self.resources[r as usize];
        if !res.pool.has_free() || res.lent.is_empty() {
            return None;
        }
        if !res.guard.as_mut().is_some_and(|g| g.is_closed(now)) {
            return None;
        }
        self.oldest_lent(r)
    }

    /// Moves `key` (from [`Scheduler::next_to_take_back`]) from the fallback's queue into
    /// `r`'s, keeping its wait (`since`, its wait deadline).
    pub(super) fn take_back(&mut self, r: u32, key: JobKey) {
        self.resources[r as usize].lent.pop();
        let weight;
        let (tenant, cost, epoch, f) = {
            let entry = &mut self.jobs[key.idx as usize];
            weight = self.config.weight(entry.tenant.as_str());
            let f = entry.resource;
            entry.resource = r;
            // Its place in the fallback's queue goes stale.
            entry.epoch = entry.epoch.wrapping_add(1);
            (entry.tenant.clone(), entry.cost, entry.epoch, f)
        };
        let from = &mut self.resources[f as usize];
        from.queued -= 1;
        from.tenants.unqueued(&tenant);
        let res = &mut self.resources[r as usize];
        res.tenants.enqueued(&tenant, weight);
        res.queue.push(tenant, weight, cost, Queued::new(key, epoch));
        res.queued += 1;
        if let Some(guard) = res.guard.as_mut() {
            guard.stats.returned += 1;
        }
        tracing::debug!(job = key.id.0, to = %res.name, "routed back");
    }
}

/// Job `id` at slab `idx`, submitted to `r`, is waiting on `f`.
fn lent_waiting<T>(jobs: &Slab<Entry<T>>, id: u64, idx: u32, r: u32, f: u32) -> bool {
    jobs.get(idx as usize).is_some_and(|e| {
        e.id.0 == id && e.home == r && e.resource == f && matches!(e.stage, Stage::Waiting { .. })
    })
}
