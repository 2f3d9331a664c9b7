//! Routing: moving the jobs waiting on a resource whose breaker is open to its fallback,
//! and back to its queue, in submission order, when its breaker closes.

use std::time::Duration;

use super::entry::Stage;
use super::Scheduler;

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
        while let Some((_, (key, _))) = res.queue.pop_live(|(k, epoch)| {
            jobs.get(k.idx as usize).is_some_and(|e| {
                e.id == k.id
                    && e.epoch == *epoch
                    && matches!(e.stage, Stage::Waiting { .. } | Stage::Resuming { .. })
            })
        }) {
            res.queued -= 1;
            moved.push(key);
        }
        for key in moved {
            let entry = &mut self.jobs[key.idx as usize];
            if matches!(entry.stage, Stage::Resuming { .. }) {
                // A resumed parent keeps its place on `r` (without marking `r` dirty,
                // which would route again at once): it waits for the breaker.
                entry.epoch = entry.epoch.wrapping_add(1);
                let weight = self.config.weight(entry.tenant.as_str());
                let res = &mut self.resources[r as usize];
                res.queue
                    .push(entry.tenant.clone(), weight, entry.cost, (key, entry.epoch));
                res.queued += 1;
                continue;
            }
            entry.resource = f;
            let res = &mut self.resources[r as usize];
            res.guard.as_mut().expect("guarded").stats.fallbacks += 1;
            tracing::debug!(job = key.id.0, from = %res.name, "fallback");
            self.enqueue(key, now);
        }
        true
    }

    /// `r`'s breaker closed: the jobs still waiting on its fallback that were submitted to
    /// `r` come back to `r`'s queue instead of draining on the (slower) fallback. They keep
    /// their wait (its start and deadline) and their place by submission: `r`'s queue is
    /// rebuilt in job-id order (ids grow with submission), so a job moved away at the
    /// breaker's opening is not put behind one submitted since. Resumed parents stay where
    /// their work is.
    pub(super) fn route_back(&mut self, r: u32) {
        let Some(f) = self.resources[r as usize].guard.as_ref().and_then(|g| g.fallback) else {
            return;
        };
        let live = |jobs: &slab::Slab<super::entry::Entry<T>>, k: &super::JobKey, epoch: u32| {
            jobs.get(k.idx as usize).is_some_and(|e| {
                e.id == k.id
                    && e.epoch == epoch
                    && matches!(e.stage, Stage::Waiting { .. } | Stage::Resuming { .. })
            })
        };
        // Everything waiting on the fallback: the jobs of `r` come back, the others stay.
        let mut on_fallback = Vec::new();
        let res = &mut self.resources[f as usize];
        while let Some((_, (key, epoch))) = res.queue.pop_live(|(k, e)| live(&self.jobs, k, *e)) {
            on_fallback.push((key, epoch));
        }
        let (back, stay): (Vec<_>, Vec<_>) = on_fallback.into_iter().partition(|(k, _)| {
            let e = &self.jobs[k.idx as usize];
            e.home == r && matches!(e.stage, Stage::Waiting { .. })
        });
        for &(key, epoch) in &stay {
            let e = &self.jobs[key.idx as usize];
            let weight = self.config.weight(e.tenant.as_str());
            self.resources[f as usize]
                .queue
                .push(e.tenant.clone(), weight, e.cost, (key, epoch));
        }
        if back.is_empty() {
            return;
        }
        // `r`'s own waiting jobs and the returning ones, in submission order.
        let mut on_home = back.clone();
        let res = &mut self.resources[r as usize];
        while let Some((_, item)) = res.queue.pop_live(|(k, e)| live(&self.jobs, k, *e)) {
            on_home.push(item);
        }
        on_home.sort_by_key(|(k, _)| k.id.0);
        for &(key, epoch) in &on_home {
            let e = &mut self.jobs[key.idx as usize];
            e.resource = r;
            let weight = self.config.weight(e.tenant.as_str());
            self.resources[r as usize]
                .queue
                .push(e.tenant.clone(), weight, e.cost, (key, epoch));
        }
        for &(key, _) in &back {
            let tenant = self.jobs[key.idx as usize].tenant.clone();
            let weight = self.config.weight(tenant.as_str());
            self.resources[f as usize].queued -= 1;
            self.resources[f as usize].tenants.unqueued(&tenant);
            self.resources[r as usize].queued += 1;
            self.resources[r as usize].tenants.enqueued(&tenant, weight);
        }
        let res = &mut self.resources[r as usize];
        res.guard.as_mut().expect("guarded").stats.returned += back.len() as u64;
        tracing::info!(resource = %res.name, returned = back.len(), "breaker closed: jobs back from the fallback");
        self.mark_dirty(r);
        self.mark_dirty(f);
    }
}
