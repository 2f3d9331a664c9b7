//! Routing: moving the jobs waiting on a resource whose breaker is open to its fallback.

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
}
